"""Cluster mode of the train step: submit a KubeRay RayJob and follow it to the end.

The component pod only orchestrates: the RayJob's driver runs `segflow train` on a Ray
cluster of workers that reads the dataset from, and writes the run to, MinIO. The recipe
travels as a JSON file next to the run (OUT/recipe.json), so the job is reproducible from
what is in the store.

This module is the one source of the RayJob spec: k8s/examples/rayjob-train.yaml is its
rendering (`python -m segflow.components.rayjob > k8s/examples/rayjob-train.yaml`, checked by a
test), so the example and what the pipeline submits cannot drift apart.

Following a job: the step ends when KubeRay's jobDeploymentStatus does (Complete, Failed,
ValidationFailed), so KubeRay's own retries (backoffLimit, status Retrying) run to their end;
pods that cannot start (an image that cannot be pulled, a missing Secret) fail the step with the
kubelet's message instead of waiting for ever; and a cancelled step (SIGTERM, as when a KFP run
is cancelled and its pod deleted) deletes the RayJob, which releases its workers. The RayJob is
also owned by the step's pod (ownerReference from the downward API), so Kubernetes' garbage
collector removes it with the pod even if the step is killed without a chance to clean up.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from segflow.components.images import SEGFLOW
from segflow.config.recipe import Recipe
from segflow.errors import PipelineError
from segflow.layout import RUN, ModelRecord
from segflow.store import join_uri, latest_version, open_store

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
RAY_VERSION = "2.60.0"
# KubeRay's jobDeploymentStatus values that end a RayJob (ray-operator/apis/ray/v1/rayjob_types.go).
FINISHED, FAILED = "Complete", {"Failed", "ValidationFailed"}
# Waiting reasons of a container that will not start by waiting longer (ErrImagePull turns into
# ImagePullBackOff and back while the kubelet retries: both count once they outlast PULL_GRACE_S).
NEVER_STARTS = {"ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
PULL_ERRORS = {"ErrImagePull", "ImagePullBackOff"}
PULL_GRACE_S = 20.0
MAX_NAME = 47  # KubeRay's MaxRayJobNameLength: its RayCluster and Services add suffixes
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


# The Ray cluster's size: `segflow pipeline compile --ray KEY=VALUE,...` compiles these into the train step's env.
RAY_SIZE = {"workers": ("SEGFLOW_RAY_WORKERS", int), "worker_gpus": ("SEGFLOW_RAY_WORKER_GPUS", int),
            "worker_cpus": ("SEGFLOW_RAY_WORKER_CPUS", float), "worker_memory": ("SEGFLOW_RAY_WORKER_MEMORY", str),
            "head_cpus": ("SEGFLOW_RAY_HEAD_CPUS", float), "head_memory": ("SEGFLOW_RAY_HEAD_MEMORY", str)}
_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?")


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how RayJobs run; from the environment the pipeline gives its pods (see from_env)."""

    namespace: str = "segflow"
    image: str = SEGFLOW
    s3_endpoint: str = "http://minio-service.kubeflow:9000"
    s3_secret: str = "mlpipeline-minio-artifact"  # keys accesskey / secretkey, as Kubeflow's
    workers: int = 2
    worker_gpus: int = 1
    worker_cpus: float = 4.0
    worker_memory: str = "24Gi"
    head_cpus: float = 1.0
    head_memory: str = "8Gi"
    active_deadline_s: int = 86_400
    backoff_limit: int = 1
    owner: tuple[str, str] | None = None  # the step's pod (name, uid): the RayJob goes with it
    tolerations: list[dict] = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])

    @classmethod
    def from_env(cls) -> ClusterSettings:
        """SEGFLOW_NAMESPACE, SEGFLOW_POD_NAME/UID (downward API), SEGFLOW_IMAGE, SEGFLOW_S3_ENDPOINT, SEGFLOW_S3_SECRET
        (the compiled pipeline sets them); the SEGFLOW_RAY_* of RAY_SIZE size the Ray cluster."""
        env = os.environ
        owner = (env["SEGFLOW_POD_NAME"], env["SEGFLOW_POD_UID"]) if env.get("SEGFLOW_POD_UID") else None
        size = parse_ray_size({key: env[name] for key, (name, _) in RAY_SIZE.items() if env.get(name)})
        return cls(namespace=env.get("SEGFLOW_NAMESPACE") or _own_namespace(),
                   image=env.get("SEGFLOW_IMAGE") or cls.image,
                   s3_endpoint=env.get("SEGFLOW_S3_ENDPOINT") or cls.s3_endpoint,
                   s3_secret=env.get("SEGFLOW_S3_SECRET") or cls.s3_secret, owner=owner, **size)


def parse_ray_size(values: dict[str, str]) -> dict:
    """RAY_SIZE keys -> typed values; a clear error for an unknown key or a value of the wrong kind."""
    size = {}
    for key, value in values.items():
        if key not in RAY_SIZE:
            raise PipelineError(f"unknown Ray size setting {key!r}; the settings are: {', '.join(RAY_SIZE)}")
        kind = RAY_SIZE[key][1]
        try:
            size[key] = kind(value)
        except ValueError:
            raise PipelineError(f"Ray size setting {key}={value!r} is not {'an integer' if kind is int else 'a number'}"
                                f", e.g. workers=2,worker_cpus=4,worker_gpus=1") from None
        if kind is str and not _MEMORY.fullmatch(value):
            raise PipelineError(f"Ray size setting {key}={value!r} is not a Kubernetes memory quantity, e.g. 24Gi")
        least = 1 if key == "workers" else 0
        if kind is not str and size[key] < least:
            raise PipelineError(f"Ray size setting {key}={value!r} must be at least {least}")
    return size


def ray_size_env(spec: str) -> dict[str, str]:
    """`workers=2,worker_cpus=4` (the compile option's form) -> the train step's SEGFLOW_RAY_* variables."""
    pairs = [item.partition("=") for item in spec.split(",") if item.strip()]
    if any(not sep for _, sep, _ in pairs):
        raise PipelineError(f"Ray size {spec!r} is not KEY=VALUE,...; e.g. workers=2,worker_cpus=4,worker_gpus=1")
    values = {key.strip(): value.strip() for key, _, value in pairs}
    parse_ray_size(values)
    return {RAY_SIZE[key][0]: value for key, value in values.items()}


def _own_namespace() -> str:
    """The namespace this pod runs in (its ServiceAccount's), else the kubeconfig context's, else default."""
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    try:
        from kubernetes import config

        return config.list_kube_config_contexts()[1]["context"].get("namespace") or "default"
    except Exception:  # no kubeconfig: the caller's API client fails with its own message
        return "default"


def to_s3(uri: str) -> str:
    """KFP names artifacts in its MinIO `minio://bucket/key`; Ray and segflow speak s3://."""
    parsed = urlparse(uri)
    if parsed.scheme in ("minio", "s3"):
        return f"s3://{parsed.netloc}{parsed.path}"
    raise PipelineError(f"artifact URI {uri!r} is not in object storage; cluster runs need MinIO/S3 artifacts")


def job_name(recipe_name: str) -> str:
    """segflow-RECIPE-XXXXXX: a DNS-1035 label KubeRay accepts (at most 47 characters), unique per submission."""
    stem = re.sub(r"[^a-z0-9-]+", "-", recipe_name.lower()).strip("-") or "recipe"
    return f"segflow-{stem}"[: MAX_NAME - 7].rstrip("-") + f"-{secrets.token_hex(3)}"


def _quantity(cpus: float) -> str:
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def rayjob_manifest(name: str, recipe_uri: str, dataset_uri: str, out_uri: str, settings: ClusterSettings) -> dict:
    """The RayJob: a head that schedules nothing, WORKERS workers that train, the driver `segflow train`."""
    env = [
        {"name": "SEGFLOW_S3_ENDPOINT", "value": settings.s3_endpoint},
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": "accesskey"}}},
        {"name": "AWS_SECRET_ACCESS_KEY",
         "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": "secretkey"}}},
    ]
    gpus = settings.worker_gpus
    entrypoint = (f"segflow train {recipe_uri} --dataset {dataset_uri} --out {out_uri} "
                  f"--workers {settings.workers} --set training.use_gpu={'true' if gpus else 'false'} "
                  f"--set training.cpus_per_worker={settings.worker_cpus:g}")
    shm = {"name": "shm", "mountPath": "/dev/shm"}  # Ray's object store, NCCL and DataLoader workers: more than 64 MiB
    head = {"cpu": _quantity(settings.head_cpus), "memory": settings.head_memory}
    worker = {"cpu": _quantity(settings.worker_cpus), "memory": settings.worker_memory}
    if gpus:
        worker["nvidia.com/gpu"] = str(gpus)

    def pod(container: dict, **spec) -> dict:
        return {"spec": {"automountServiceAccountToken": False,  # Ray needs no Kubernetes API access
                         "containers": [{"image": settings.image, "env": env, "volumeMounts": [shm]} | container],
                         "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}], **spec}}

    metadata = {"name": name, "namespace": settings.namespace,
                "labels": {"app.kubernetes.io/name": "segflow", "app.kubernetes.io/component": "train"}}
    if settings.owner:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": settings.owner[0],
                                        "uid": settings.owner[1]}]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RayJob",
        "metadata": metadata,
        "spec": {
            "entrypoint": entrypoint,
            # The Ray cluster (and its GPUs) goes a minute after the job ends; the RayJob and its submitter Job,
            # with the driver's log, stay until the step's pod goes (ownerReference) or someone deletes them.
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 60,
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": settings.active_deadline_s,
            # The submitter only runs `ray job submit` and follows the logs: KubeRay's default asks for half a CPU.
            "submitterPodTemplate": {"spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                                              "containers": [{"name": "ray-job-submitter", "image": settings.image,
                                                              "resources": {"requests": {"cpu": "50m",
                                                                                         "memory": "256Mi"},
                                                                            "limits": {"memory": "1Gi"}}}]}},
            "rayClusterSpec": {
                "rayVersion": RAY_VERSION,
                "headGroupSpec": {
                    "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},  # the head trains nothing
                    "template": pod({"name": "ray-head", "resources": {"requests": head, "limits": head}}),
                },
                "workerGroupSpecs": [{
                    "groupName": "gpu" if gpus else "cpu",
                    "replicas": settings.workers,
                    "minReplicas": settings.workers,
                    "maxReplicas": settings.workers,
                    "rayStartParams": {"num-cpus": str(max(1, math.floor(settings.worker_cpus)))},
                    "template": pod({"name": "ray-worker", "resources": {"requests": worker, "limits": worker}},
                                    **({"tolerations": settings.tolerations} if gpus else {})),
                }],
            },
        },
    }


def _log(line: str) -> None:
    print(line, flush=True)  # a pod's stdout is a pipe: unflushed lines reach `kubectl logs` only at the end


def submit_and_follow(api, manifest: dict, *, core=None, poll_s: float = 5.0, timeout_s: float | None = None,
                      log=_log) -> dict:
    """Create the RayJob and wait until KubeRay finishes it; raise PipelineError unless it completed.

    `api` is a kubernetes.client.CustomObjectsApi, `core` a CoreV1Api for the pods' state (None: no pod
    checks). SIGTERM while following deletes the RayJob before the step exits.
    """
    from kubernetes.client.exceptions import ApiException

    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    except ApiException as exc:
        raise PipelineError(f"the API server refused RayJob {namespace}/{name}: {exc.status} {exc.reason}: "
                            f"{exc.body}") from None
    log(f"RayJob {namespace}/{name} created: {manifest['spec']['entrypoint']}")
    with _deleted_on_cancel(api, namespace, name, log):
        try:
            return _follow(api, core, namespace, name, manifest, poll_s, timeout_s, log)
        except _Unstartable as exc:
            _delete(api, namespace, name, log)
            raise PipelineError(f"RayJob {namespace}/{name} cannot start: {exc} (the RayJob was deleted)") from None


class _Unstartable(Exception):
    """A pod of the job that waiting will not start."""


def _follow(api, core, namespace: str, name: str, manifest: dict, poll_s: float, timeout_s: float | None,
            log) -> dict:
    timeout_s = timeout_s or manifest["spec"].get("activeDeadlineSeconds", 86_400) + 600
    deadline, seen, pulling = time.monotonic() + timeout_s, None, {}
    while time.monotonic() < deadline:
        status = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status") or {}
        deployment, job = status.get("jobDeploymentStatus", ""), status.get("jobStatus", "")
        if (deployment, job) != seen:
            seen = (deployment, job)
            retries = f", failed attempts {status['failed']}" if status.get("failed") else ""
            log(f"RayJob {name}: {deployment or 'New'} / job {job or '-'}{retries}")
        if deployment == FINISHED and job == "SUCCEEDED":
            return status
        if deployment == FINISHED or deployment in FAILED:
            reason = f" ({status['reason']})" if status.get("reason") else ""
            raise PipelineError(
                f"RayJob {namespace}/{name} ended {deployment}{reason}, job {job or 'not started'}: "
                f"{status.get('message') or 'no message'} (the driver's output: kubectl -n {namespace} logs "
                f"job/{name}; the operator's view: kubectl -n {namespace} describe rayjob {name})")
        if core is not None:
            _check_pods(core, namespace, name, status.get("rayClusterName", ""), pulling)
        time.sleep(poll_s)
    raise PipelineError(f"RayJob {namespace}/{name} did not finish within {timeout_s:.0f} s")


def _check_pods(core, namespace: str, name: str, cluster: str, pulling: dict) -> None:
    """Raise _Unstartable for a pod of the job whose container cannot start (its first such container)."""
    from kubernetes.client.exceptions import ApiException

    selectors = [f"job-name={name}"] + ([f"ray.io/cluster={cluster}"] if cluster else [])
    for selector in selectors:
        try:
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        except ApiException as exc:
            if exc.status == 403:  # RBAC without pod access: KubeRay's status alone decides
                return
            raise
        for pod in pods:
            for status in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
                waiting = status.state.waiting if status.state else None
                if waiting is None or waiting.reason not in NEVER_STARTS | PULL_ERRORS:
                    continue
                key = (pod.metadata.name, status.name)
                first = pulling.setdefault(key, time.monotonic())
                if waiting.reason in NEVER_STARTS or time.monotonic() - first >= PULL_GRACE_S:
                    raise _Unstartable(f"pod {pod.metadata.name}, container {status.name} ({status.image}): "
                                       f"{waiting.reason}: {waiting.message or 'no message'}")


def _delete(api, namespace: str, name: str, log) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                            propagation_policy="Background")
        log(f"deleted RayJob {namespace}/{name} (KubeRay removes its Ray cluster)")
    except ApiException as exc:
        if exc.status != 404:
            log(f"could not delete RayJob {namespace}/{name}: {exc.status} {exc.reason}; delete it with "
                f"kubectl -n {namespace} delete rayjob {name}")


class _deleted_on_cancel:
    """While following: SIGTERM (KFP cancelling the run deletes the step's pod) deletes the RayJob, then exits 143."""

    def __init__(self, api, namespace: str, name: str, log):
        self.api, self.namespace, self.name, self.log = api, namespace, name, log
        self.previous = None

    def _cancel(self, signum, frame):
        self.log(f"cancelled (signal {signum}): deleting RayJob {self.namespace}/{self.name}")
        _delete(self.api, self.namespace, self.name, self.log)
        sys.exit(128 + signum)

    def __enter__(self):
        if _in_main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._cancel)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _clients():
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def train_on_cluster(recipe: Recipe, dataset_uri: str, out_uri: str) -> ModelRecord:
    """Train RECIPE as a RayJob on DATASET_URI into OUT_URI (object-store URIs); the trained model's record."""
    settings = ClusterSettings.from_env()
    dataset_uri, out_uri = to_s3(dataset_uri), to_s3(out_uri)
    recipe_uri = join_uri(out_uri, "recipe.json")
    open_store(out_uri).put_text("recipe.json", recipe.model_dump_json(indent=2))
    api, core = _clients()
    submit_and_follow(api, rayjob_manifest(job_name(recipe.name), recipe_uri, dataset_uri, out_uri, settings),
                      core=core)
    model_uri = join_uri(out_uri, RUN.model)
    return ModelRecord(model_uri, latest_version(open_store(model_uri)))


def example() -> dict:
    """k8s/examples/rayjob-train.yaml: the aerial recipe on 2 GPU workers, in namespace segflow."""
    manifest = rayjob_manifest("segflow-train", "aerial", "s3://segflow/datasets/aerial", "s3://segflow/runs/aerial",
                               ClusterSettings(s3_endpoint="http://minio.segflow.svc:9000", s3_secret="segflow-minio"))
    return manifest


EXAMPLE_HEADER = """\
# Train a recipe on a KubeRay cluster of GPU workers; checkpoints, model and report go to MinIO.
#   kubectl apply -k k8s/ && kubectl apply -f k8s/examples/rayjob-train.yaml
#   kubectl -n segflow get rayjob segflow-train -w
# Generated from components/rayjob.py, the spec the pipeline's train step submits:
#   python -m segflow.components.rayjob > k8s/examples/rayjob-train.yaml
"""


if __name__ == "__main__":
    import yaml

    sys.stdout.write(EXAMPLE_HEADER + yaml.safe_dump(example(), sort_keys=False))
