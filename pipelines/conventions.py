"""What a compiled pipeline assumes about the cluster it runs in, after Kubeflow 1.10's conventions.

KFP runs a task in `kubeflow` (standalone install) or in the user's profile namespace (multi-user),
never in a namespace segflow creates. There Kubeflow provides MinIO at minio-service.kubeflow:9000
and its credentials in the Secret `mlpipeline-minio-artifact` (keys `accesskey`, `secretkey`). The
task learns its own namespace, pod name and uid through the downward API, so the RayJob the train
step creates lands beside it, mounts the same Secret and is owned by the step's pod.

These names are the contract between the pipelines (segflow.pipelines.tasks puts them in every
task) and the code that runs in the tasks (segflow.components.rayjob reads them). They are fixed
when a pipeline is compiled (`segflow pipeline compile --s3-endpoint ...`). No kfp import here:
the CLI reads the defaults when it starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

from segflow.components import BASE_IMAGE
from segflow.errors import ConfigError

KUBEFLOW_MINIO = "http://minio-service.kubeflow:9000"
KUBEFLOW_MINIO_SECRET = "mlpipeline-minio-artifact"
MINIO_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
# The task's own pod, through the downward API: the RayJob goes to its namespace and is owned by it.
DOWNWARD_API = {"SEGFLOW_NAMESPACE": "metadata.namespace", "SEGFLOW_POD_NAME": "metadata.name",
                "SEGFLOW_POD_UID": "metadata.uid"}
IMAGE_ENV, S3_ENDPOINT_ENV, S3_SECRET_ENV = "SEGFLOW_IMAGE", "SEGFLOW_S3_ENDPOINT", "SEGFLOW_S3_SECRET"
TORCHSERVE_KEYS = {"management-url": "SEGFLOW_TORCHSERVE_MANAGEMENT_URL",
                   "management-key": "SEGFLOW_TORCHSERVE_MANAGEMENT_KEY"}
# A Helm release name (Helm's own rule: a DNS label of at most 53 characters) and a namespace (a DNS label).
_RELEASE = re.compile(r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class ClusterConventions:
    """The cluster a compiled pipeline runs in: MinIO's address and Secret, the image, GPUs, TorchServe's Secret.

    gpu=False compiles GPU steps without a GPU request, for a cluster that has none (slow, but it runs).
    torchserve_secret names a Secret (keys management-url, management-key) the deploy step reads; empty:
    the step uses its `torchserve_management_url` parameter, else logs the `helm upgrade`.
    ray sizes the train step's RayJob, `KEY=VALUE,...` over segflow.components.rayjob.RAY_SIZE's keys (workers,
    worker_gpus, worker_cpus, worker_memory, head_cpus, head_memory); unset keys keep that module's defaults,
    except worker_gpus, which is 0 when gpu is False.
    helm_release, `NAME[/NAMESPACE]`, is the chart's serving release the deploy step upgrades to the new
    archive (NAMESPACE defaults to the step's own); empty: TorchServe's management API, else the logged command.
    """

    s3_endpoint: str = KUBEFLOW_MINIO
    minio_secret: str = KUBEFLOW_MINIO_SECRET
    image: str = BASE_IMAGE  # segflow.components.images.SEGFLOW unless SEGFLOW_IMAGE names another
    gpu: bool = True
    torchserve_secret: str = ""
    ray: str = ""
    helm_release: str = ""

    def __post_init__(self) -> None:
        endpoint = urlparse(self.s3_endpoint)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname or endpoint.path not in ("", "/"):
            raise ConfigError(f"S3 endpoint {self.s3_endpoint!r} is not a URL like {KUBEFLOW_MINIO}: give "
                              "--s3-endpoint as http(s)://HOST[:PORT], the address pods reach MinIO at")
        for option, name in (("--minio-secret", self.minio_secret), ("--torchserve-secret", self.torchserve_secret)):
            if name and not _SECRET_NAME.fullmatch(name):
                raise ConfigError(f"{option} {name!r} is not a Kubernetes Secret name (lower-case letters, digits, "
                                  "'-' and '.', starting and ending with a letter or digit)")
        if not self.minio_secret:
            raise ConfigError(f"--minio-secret is empty: name the Secret with the MinIO keys accesskey and secretkey "
                              f"(Kubeflow's is {KUBEFLOW_MINIO_SECRET})")
        if not self.image or any(c.isspace() for c in self.image):
            raise ConfigError(f"--image {self.image!r} is not an image reference, e.g. {BASE_IMAGE}")
        self.ray_env()  # refuses a malformed --ray now, not in the cluster
        self.helm_env()

    def env(self) -> dict[str, str]:
        """The plain environment variables every task gets (besides the downward API's and the Secret's)."""
        return {IMAGE_ENV: self.image, S3_ENDPOINT_ENV: self.s3_endpoint, S3_SECRET_ENV: self.minio_secret}

    def helm_env(self) -> dict[str, str]:
        """The deploy step's SEGFLOW_HELM_RELEASE (and SEGFLOW_HELM_NAMESPACE when --helm-release names one)."""
        from segflow.serving.release import NAMESPACE_ENV, RELEASE_ENV

        if not self.helm_release:
            return {}
        name, _, namespace = self.helm_release.partition("/")
        if not _RELEASE.fullmatch(name) or (namespace and not _NAMESPACE.fullmatch(namespace)) or \
                self.helm_release.endswith("/"):
            raise ConfigError(f"--helm-release {self.helm_release!r} is not NAME or NAME/NAMESPACE: a Helm release "
                              "name (lower-case letters, digits and '-', at most 53) and a namespace, e.g. "
                              "segflow/segflow, as docs/deploy.md installs the chart")
        return {RELEASE_ENV: name} | ({NAMESPACE_ENV: namespace} if namespace else {})

    def ray_env(self) -> dict[str, str]:
        """The train step's SEGFLOW_RAY_* variables: the size of the Ray cluster its RayJob asks for."""
        from segflow.components.rayjob import RAY_SIZE, ray_size_env
        from segflow.errors import PipelineError

        try:
            env = ray_size_env(self.ray)
        except PipelineError as exc:
            raise ConfigError(f"--ray: {exc}") from None
        gpus = RAY_SIZE["worker_gpus"][0]
        return env if self.gpu or gpus in env else env | {gpus: "0"}
