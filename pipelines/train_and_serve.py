"""train_and_serve: prep -> train -> evaluate -> package, Kubernetes settings included.

`cluster` switches training between local Ray in the step's pod and a KubeRay RayJob.
kfp-kubernetes settings (MinIO credentials from a Secret, GPU node selection) apply in a
cluster; kfp.local ignores them with a warning.
"""

from kfp import dsl, kubernetes

from segflow.components.evaluate import evaluate
from segflow.components.package import package
from segflow.components.prep import prep
from segflow.components.train import train

MINIO_SECRET = "segflow-minio"


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


@dsl.pipeline(name="segflow-train-and-serve",
              description="Prepare data, train on Ray, evaluate, package for TorchServe and deploy.")
def train_and_serve(recipe_json: str, data_path: str = "", cluster: bool = False):
    data = in_cluster(prep(recipe_json=recipe_json, data_path=data_path).set_display_name("prep"))
    trained = in_cluster(train(recipe_json=recipe_json, overrides_json="{}", dataset=data.outputs["dataset"],
                               cluster=cluster).set_display_name("train"))
    on_gpu(in_cluster(evaluate(model=trained.outputs["run"], dataset=data.outputs["dataset"], split="val")
                      .set_display_name("evaluate")))
    in_cluster(package(model=trained.outputs["run"]).set_display_name("package"))
