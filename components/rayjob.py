"""Cluster mode of the train step: submit a KubeRay RayJob and follow it to the end.

The component pod only orchestrates: the RayJob's driver runs `segflow train` on a Ray
cluster of GPU workers that reads the dataset from, and writes the run to, MinIO. The recipe
travels as a JSON file next to the run (OUT/recipe.json), so the job is reproducible from
what is in the store. A failed job fails the step with the job's own message.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from segflow.components.images import SEGFLOW
from segflow.config.recipe import Recipe
from segflow.errors import PipelineError
from segflow.layout import RUN, ModelRecord
from segflow.store import join_uri, latest_version, open_store

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
MINIO_SECRET = "segflow-minio"


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how RayJobs run; from the environment the pipeline's pods get (kfp-kubernetes)."""

    namespace: str = "segflow"
    image: str = SEGFLOW
    s3_endpoint: str = "http://minio.segflow.svc:9000"
    gpu_workers: int = 1
    cpus_per_worker: int = 4
    memory_per_worker: str = "24Gi"
    service_account: str = "segflow-ray"
    tolerations: list[dict] = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])

    @classmethod
    def from_env(cls) -> ClusterSettings:
        env = os.environ
        return cls(
            namespace=env.get("SEGFLOW_NAMESPACE", cls.namespace),
            image=env.get("SEGFLOW_IMAGE", cls.image),
            s3_endpoint=env.get("SEGFLOW_S3_ENDPOINT", cls.s3_endpoint),
            gpu_workers=int(env.get("SEGFLOW_GPU_WORKERS", cls.gpu_workers)),
        )


def to_s3(uri: str) -> str:
    """KFP names artifacts in its MinIO `minio://bucket/key`; Ray and segflow speak s3://."""
    parsed = urlparse(uri)
    if parsed.scheme in ("minio", "s3"):
        return f"s3://{parsed.netloc}{parsed.path}"
    raise PipelineError(f"artifact URI {uri!r} is not in object storage; cluster runs need MinIO/S3 artifacts")


def rayjob_manifest(name: str, recipe_uri: str, dataset_uri: str, out_uri: str, settings: ClusterSettings) -> dict:
    env = [
        {"name": "SEGFLOW_S3_ENDPOINT", "value": settings.s3_endpoint},
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": MINIO_SECRET, "key": "accesskey"}}},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": MINIO_SECRET, "key": "secretkey"}}},
    ]
    entrypoint = (f"segflow train {recipe_uri} --dataset {dataset_uri} --out {out_uri} "
                  f"--workers {settings.gpu_workers} --set training.use_gpu=true "
                  f"--set training.cpus_per_worker={settings.cpus_per_worker}")
    container = {"image": settings.image, "env": env}
    worker_resources = {"cpu": str(settings.cpus_per_worker), "memory": settings.memory_per_worker,
                        "nvidia.com/gpu": "1"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": settings.namespace,
                     "labels": {"app.kubernetes.io/name": "segflow", "app.kubernetes.io/component": "train"}},
        "spec": {
            "entrypoint": entrypoint,
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 3600,
            "backoffLimit": 1,
            "rayClusterSpec": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {
                    "rayStartParams": {"num-cpus": "0"},
                    "template": {"spec": {"serviceAccountName": settings.service_account, "containers": [
                        container | {"name": "ray-head",
                                     "resources": {"requests": {"cpu": "2", "memory": "8Gi"},
                                                   "limits": {"cpu": "2", "memory": "8Gi"}}}]}},
                },
                "workerGroupSpecs": [{
                    "groupName": "gpu",
                    "replicas": settings.gpu_workers,
                    "minReplicas": settings.gpu_workers,
                    "maxReplicas": settings.gpu_workers,
                    "rayStartParams": {},
                    "template": {"spec": {
                        "serviceAccountName": settings.service_account,
                        "tolerations": settings.tolerations,
                        "containers": [container | {"name": "ray-worker", "resources": {
                            "requests": worker_resources, "limits": worker_resources}}],
                    }},
                }],
            },
        },
    }


def submit_and_follow(api, manifest: dict, *, poll_s: float = 5.0, timeout_s: float = 86_400) -> dict:
    """Create the RayJob and wait for a terminal status; raise PipelineError unless it SUCCEEDED.

    `api` is a kubernetes.client.CustomObjectsApi.
    """
    from kubernetes.client.exceptions import ApiException

    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    except ApiException as exc:
        raise PipelineError(f"the API server refused RayJob {namespace}/{name}: {exc.status} {exc.reason}: "
                            f"{exc.body}") from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status") or {}
        if status.get("jobStatus") in TERMINAL or status.get("jobDeploymentStatus") == "Failed":
            if status.get("jobStatus") == "SUCCEEDED":
                return status
            raise PipelineError(
                f"RayJob {namespace}/{name} ended {status.get('jobStatus') or status.get('jobDeploymentStatus')}: "
                f"{status.get('message') or 'no message'} (kubectl -n {namespace} logs job/{name})"
            )
        time.sleep(poll_s)
    raise PipelineError(f"RayJob {namespace}/{name} did not finish within {timeout_s:.0f} s")


def train_on_cluster(recipe: Recipe, dataset_uri: str, out_uri: str) -> ModelRecord:
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    settings = ClusterSettings.from_env()
    dataset_uri, out_uri = to_s3(dataset_uri), to_s3(out_uri)
    recipe_uri = join_uri(out_uri, "recipe.json")
    open_store(out_uri).put_text("recipe.json", recipe.model_dump_json(indent=2))
    name = f"segflow-{recipe.name}-{int(time.time())}"
    submit_and_follow(client.CustomObjectsApi(), rayjob_manifest(name, recipe_uri, dataset_uri, out_uri, settings))
    model_uri = join_uri(out_uri, RUN.model)
    return ModelRecord(model_uri, latest_version(open_store(model_uri)))
