"""How the pipelines place their tasks: in a cluster, after its ClusterConventions, or under kfp.local.

@dsl.pipeline builds its graph when it is defined, so each pipeline module builds one pipeline per
placement (`build(placement)`).

The compiled Kubernetes settings stay within what KFP 2.4 and 2.5 backends read. Their driver
(backend/src/v2/driver/driver.go at tags 2.4.0 and 2.5.0) copies only `secretName` and `keyToEnv`
from `secretAsEnv`: `optional` is dropped, so a task naming an absent Secret fails with
CreateContainerConfigError. The 2.4.0 driver also parses the platform spec with golang/protobuf's
jsonpb.UnmarshalString, which refuses fields its vendored kubernetes_platform proto (d911c8b73b49,
2024-07) does not declare: `secretNameParameter` and `optional`, which kfp-kubernetes 2.17's
use_secret_as_env always writes (2.5.0 parses with AllowUnknownFields). So Secrets are attached
with secretName alone (`_secret_as_env`), and only Secrets the user said exist. fieldPathAsEnv and
tolerations (key, operator, effect) are in that proto; GPU requests are the container's accelerator
(resourceType / resourceCount, read by both drivers).
"""

from __future__ import annotations

from google.protobuf import json_format
from kfp import dsl, kubernetes
from kfp.kubernetes import common
from kfp.kubernetes import kubernetes_executor_config_pb2 as pb

from segflow.pipelines.conventions import DOWNWARD_API, MINIO_KEYS, TORCHSERVE_KEYS, ClusterConventions

GPU = "nvidia.com/gpu"


class ClusterPlacement:
    """Tasks for a cluster with `conventions`: the image, MinIO and the pod's identity in every task."""

    def __init__(self, conventions: ClusterConventions) -> None:
        self.conventions = conventions

    def in_cluster(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """The image, MinIO's address and credentials, and the pod's own identity, as environment variables."""
        task.set_container_image(self.conventions.image)
        for name, value in self.conventions.env().items():
            task.set_env_variable(name, value)
        for name, field_path in DOWNWARD_API.items():
            kubernetes.use_field_path_as_env(task, env_name=name, field_path=field_path)
        return _secret_as_env(task, self.conventions.minio_secret, MINIO_KEYS)

    def on_gpu(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """A step that trains in its own pod (not through a RayJob): one GPU, tolerating GPU nodes' taint.

        No node selector: the GPU request is what puts the pod on a GPU node, with or without GPU
        feature discovery's labels (a selector on nvidia.com/gpu.present left it Pending without them).
        """
        if not self.conventions.gpu:
            return task
        kubernetes.add_toleration(task, key=GPU, operator="Exists", effect="NoSchedule")
        return task.set_accelerator_type(GPU).set_accelerator_limit(1)

    def with_ray(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """The size of the Ray cluster the train step's RayJob asks for (--ray), as SEGFLOW_RAY_* variables."""
        for name, value in self.conventions.ray_env().items():
            task.set_env_variable(name, value)
        return task

    def with_torchserve(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """TorchServe's management URL and key from the Secret named at compile time, if one was."""
        secret = self.conventions.torchserve_secret
        return _secret_as_env(task, secret, TORCHSERVE_KEYS) if secret else task

    def with_helm_release(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """The serving release the deploy step upgrades (--helm-release), as SEGFLOW_HELM_* variables, if one was."""
        for name, value in self.conventions.helm_env().items():
            task.set_env_variable(name, value)
        return task


class LocalPlacement:
    """kfp.local: tasks run in this interpreter, with this machine's environment; nothing is added.

    kfp.local applies a task's environment variables, so cluster ones would point a laptop's run at
    a cluster's MinIO; the Kubernetes settings it would ignore anyway.
    """

    def in_cluster(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        return task

    def on_gpu(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        return task

    def with_ray(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        return task

    def with_torchserve(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        return task

    def with_helm_release(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        return task


Placement = ClusterPlacement | LocalPlacement


def _secret_as_env(task: dsl.PipelineTask, secret: str, keys: dict[str, str]) -> dsl.PipelineTask:
    """kfp-kubernetes' SecretAsEnv with only the fields a KFP 2.4 driver knows (secretName, keyToEnv).

    kubernetes.use_secret_as_env would add secretNameParameter and optional, which the 2.4.0 driver
    refuses to parse (see the module docstring).
    """
    config = common.get_existing_kubernetes_config_as_message(task)
    config.secret_as_env.append(pb.SecretAsEnv(secret_name=secret, key_to_env=[
        pb.SecretAsEnv.SecretKeyToEnvMap(secret_key=key, env_var=env) for key, env in keys.items()]))
    task.platform_config["kubernetes"] = json_format.MessageToDict(config)
    return task
