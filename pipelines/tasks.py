"""Kubernetes settings the pipelines give their tasks (kfp-kubernetes); kfp.local ignores them with a warning."""

from kfp import dsl, kubernetes

MINIO_SECRET = "segflow-minio"
# TorchServe's management address and key for the deploy step; optional: without it the step emits `helm upgrade`.
TORCHSERVE_SECRET = "segflow-torchserve"


def in_cluster(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """MinIO credentials from the Secret, as the AWS_* variables segflow's store and Ray read."""
    kubernetes.use_secret_as_env(task, secret_name=MINIO_SECRET, secret_key_to_env={
        "accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"})
    return task


def on_gpu(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """A step that computes on a GPU itself (not through a RayJob): a GPU node and one GPU."""
    kubernetes.add_node_selector(task, label_key="nvidia.com/gpu.present", label_value="true")
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    return task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)


def with_torchserve(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """TorchServe's management URL and key from the chart's Secret, when it exists."""
    kubernetes.use_secret_as_env(task, secret_name=TORCHSERVE_SECRET, optional=True, secret_key_to_env={
        "management-url": "SEGFLOW_TORCHSERVE_MANAGEMENT_URL", "management-key": "SEGFLOW_TORCHSERVE_MANAGEMENT_KEY"})
    return task
