"""The KubeRay operator on the test node, deployed from the manifests KubeRay ships, and a Kubeflow-like MinIO.

On tests/support/node.py's cluster:

    KubeRay's CRDs and its default deployment (ray-operator/config/default in the operator's module
        source: ServiceAccount, ClusterRole and binding, leader-election Role, the Deployment), in
        namespace ray-system, running the operator built from its Go module (gobuild.kuberay())
        instead of quay.io/kuberay/operator. It runs as a pod, as users run it: it reaches Ray's
        dashboards by their Services' cluster DNS names, which only resolve inside the cluster.
    a MinIO where Kubeflow Pipelines keeps one: Service minio-service in namespace kubeflow, port
        9000, bucket mlpipeline; the credentials live in the Secret Kubeflow gives every profile
        namespace, mlpipeline-minio-artifact (keys accesskey and secretkey).

Every image is local (imagePullPolicy Never); CPU requests are small, since the node has 2 cores.
Teardown deletes the RayJobs and RayClusters first, while the operator still runs to remove their
pods, then what was applied, then the CRDs.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from support import gobuild, node_images
from support.kube import kubectl

NAMESPACE = "ray-system"
KUBEFLOW = "kubeflow"
MINIO_SERVICE, MINIO_PORT, MINIO_BUCKET = "minio-service", 9000, "mlpipeline"
MINIO_SECRET = "mlpipeline-minio-artifact"
MINIO_KEYS = {"accesskey": "minio", "secretkey": "minio-kubeflow-123"}
FIELD_MANAGER = "segflow-tests"


def _upstream() -> list[dict]:
    """KubeRay's default deployment as `kubectl kustomize` renders it from the module source, less its CRDs."""
    config = gobuild.kuberay_crds()[0].parents[2]  # config/crd/bases/X.yaml -> config
    rendered = subprocess.run([kubectl(), "kustomize", str(config / "default")],
                              capture_output=True, text=True, check=True).stdout
    return [o for o in yaml.safe_load_all(rendered) if o and o["kind"] != "CustomResourceDefinition"]


def _operator(image: str) -> list[dict]:
    objects = _upstream()
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            obj["metadata"]["namespace"] = NAMESPACE
        for subject in obj.get("subjects", []):
            subject["namespace"] = NAMESPACE
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["image"], container["imagePullPolicy"] = image, "Never"
    container["resources"]["requests"]["cpu"] = "50m"
    container["resources"]["limits"]["cpu"] = "500m"  # upstream's 100m makes every reconcile crawl on this node
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}, *objects]


@contextlib.contextmanager
def kuberay_operator(node, timeout: float = 180) -> Iterator[str]:
    """The operator, ready, until exit (yields its image reference); then it and everything it made removed."""
    image = node_images.kuberay_operator()
    node.load_images([image])
    before = set(node.kubectl("get", "crd", "-o", "name").stdout.split())
    node.api.install_crds(gobuild.kuberay_crds())
    crds = sorted(set(node.kubectl("get", "crd", "-o", "name").stdout.split()) - before)
    objects = _operator(image.reference)
    try:
        node.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-",
                     stdin=yaml.safe_dump_all(objects, sort_keys=False))
        node.wait_ready("deployment", "kuberay-operator", NAMESPACE, timeout)
        yield image.reference
    finally:
        for kind in ("rayjobs", "rayclusters"):
            node.kubectl("delete", kind, "--all-namespaces", "--all", "--ignore-not-found", "--wait=true",
                         check=False, timeout=300)
        node.kubectl("delete", "--ignore-not-found", "--wait=true", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": list(reversed(objects))}), check=False, timeout=300)
        if crds:
            node.kubectl("delete", "--wait=true", *crds, check=False, timeout=180)


@dataclass(frozen=True)
class KubeflowMinio:
    """The MinIO a Kubeflow install has, reached by the test process through its ClusterIP."""

    url: str  # http://CLUSTER-IP:9000, for the test process
    in_cluster: str  # http://minio-service.kubeflow:9000, for pods

    def env(self) -> dict[str, str]:
        """What segflow's store needs to reach it from the test process."""
        return {"SEGFLOW_S3_ENDPOINT": self.url, "AWS_ACCESS_KEY_ID": MINIO_KEYS["accesskey"],
                "AWS_SECRET_ACCESS_KEY": MINIO_KEYS["secretkey"]}


def kubeflow_secret(namespace: str) -> dict:
    """The Secret Kubeflow's profile controller copies into every profile namespace."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": MINIO_SECRET, "namespace": namespace},
            "stringData": MINIO_KEYS}


def kubeflow_rbac(profiles: list[str]) -> list[dict]:
    """Kubeflow's RBAC that segflow's relies on, as its manifests and profile controller make it.

    The ClusterRole kubeflow-edit aggregates every ClusterRole labelled aggregate-to-kubeflow-edit
    (kubeflow/manifests, common/kubeflow-roles; the rules are filled in by kube-controller-manager's
    clusterrole-aggregation controller), and each profile's default-editor ServiceAccount is bound to it.
    """
    edit = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kubeflow-edit"},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"rbac.authorization.kubeflow.org/aggregate-to-kubeflow-edit": "true"}}]},
            "rules": []}
    objects = [edit]
    for profile in profiles:
        objects += [{"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": "default-editor", "namespace": profile}},
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "default-editor", "namespace": profile},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                 "name": "kubeflow-edit"},
                     "subjects": [{"kind": "ServiceAccount", "name": "default-editor", "namespace": profile}]}]
    return objects


@contextlib.contextmanager
def kubeflow_minio(node, timeout: float = 120) -> Iterator[KubeflowMinio]:
    """MinIO as minio-service.kubeflow:9000 with the bucket mlpipeline, until exit; then namespace kubeflow deleted."""
    image = node_images.minio()
    node.load_images([image])
    labels = {"app": "minio"}
    env = [{"name": "MINIO_ROOT_USER", "value": MINIO_KEYS["accesskey"]},
           {"name": "MINIO_ROOT_PASSWORD", "value": MINIO_KEYS["secretkey"]}]
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUBEFLOW}},
        kubeflow_secret(KUBEFLOW),
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "minio", "namespace": KUBEFLOW},
         "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
             "containers": [{"name": "minio", "image": image.reference, "imagePullPolicy": "Never",
                             "args": ["server", "/data", "--address", f":{MINIO_PORT}"], "env": env,
                             "ports": [{"containerPort": MINIO_PORT}],
                             "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": MINIO_PORT},
                                                "periodSeconds": 1},
                             "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}},
                             "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
             "volumes": [{"name": "data", "emptyDir": {}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": MINIO_SERVICE, "namespace": KUBEFLOW},
         "spec": {"selector": labels, "ports": [{"port": MINIO_PORT, "targetPort": MINIO_PORT}]}},
    ]
    try:
        node.apply(objects)
        node.wait_ready("deployment", "minio", KUBEFLOW, timeout)
        address = node.kubectl("-n", KUBEFLOW, "get", "service", MINIO_SERVICE, "-o",
                               "jsonpath={.spec.clusterIP}").stdout
        minio = KubeflowMinio(f"http://{address}:{MINIO_PORT}",
                              f"http://{MINIO_SERVICE}.{KUBEFLOW}:{MINIO_PORT}")
        _make_bucket(minio)
        yield minio
    finally:
        node.kubectl("delete", "namespace", KUBEFLOW, "--ignore-not-found", "--wait=true", check=False, timeout=300)


def _make_bucket(minio: KubeflowMinio, timeout: float = 30) -> None:
    from minio import Minio

    client = Minio(minio.url.removeprefix("http://"), MINIO_KEYS["accesskey"], MINIO_KEYS["secretkey"], secure=False)
    deadline = time.monotonic() + timeout
    while True:  # the Service's rules can trail the pod's readiness by a moment
        try:
            if not client.bucket_exists(MINIO_BUCKET):
                client.make_bucket(MINIO_BUCKET)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
