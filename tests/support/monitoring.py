"""prometheus-operator and a Prometheus on the test node, as kube-prometheus-stack deploys them: what the chart's
ServiceMonitor, PrometheusRule and dashboard are written for, run for real.

On tests/support/node.py's cluster, in namespace `monitoring`:

    the CRDs prometheus-operator ships, from its module source (server-side apply: the
        alertmanagerconfigs CRD is too big for the annotation a client-side apply writes)
    the operator, built from its Go module, with upstream's ServiceAccount, ClusterRole and binding
        (example/rbac/prometheus-operator); it keeps the kubelet's Service and Endpoints in
        kube-system (--kubelet-service), as kube-prometheus-stack's operator does
    a Prometheus resource running Prometheus 3.5 built from its Go module (gobuild.prometheus():
        Debian's package lacks Kubernetes service discovery), selecting ServiceMonitors and
        PrometheusRules labelled release=kube-prometheus-stack in every namespace, with upstream's
        RBAC for it (example/rbac/prometheus, nodes/metrics included)
    the stack's kubelet ServiceMonitor, its cAdvisor endpoint: https to the kubelet with the pod's
        service-account token (the kubelet asks the API server: webhook authn/authz), the kubelet's
        serving certificate checked against the cluster CA
    a ClusterIP Service in front of Prometheus, which the test process reaches through kube-proxy

Intervals are seconds instead of the stack's 30 s, so that a test sees data and alerts soon, and
CPU requests are small: the node has 2 cores. Every image is local (imagePullPolicy Never).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import time
import urllib.request
from collections.abc import Iterator

import yaml

from support import gobuild, node_images
from support.prometheus import PrometheusAPI

NAMESPACE = "monitoring"
NAME = "prometheus"  # the Prometheus resource; the operator names its StatefulSet and config Secret prometheus-NAME
SELECTED = {"release": "kube-prometheus-stack"}  # what the chart's ServiceMonitor and PrometheusRule carry
SCRAPE_INTERVAL, EVALUATION_INTERVAL = "5s", "2s"
PORT = 9090
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
FIELD_MANAGER = "segflow-monitoring"


class Monitoring(PrometheusAPI):
    """The running Prometheus, through its Service, and what the operator generated for it."""

    def __init__(self, node, url: str):
        super().__init__(url)
        self.node = node

    def generated_config(self) -> dict:
        """The Prometheus configuration the operator wrote from the ServiceMonitors (a gzipped key of its Secret)."""
        data = self.node.kubectl("-n", NAMESPACE, "get", "secret", f"prometheus-{NAME}", "-o",
                                 r"jsonpath={.data.prometheus\.yaml\.gz}").stdout
        return yaml.safe_load(gzip.decompress(base64.b64decode(data)))


@contextlib.contextmanager
def prometheus_operator(node, timeout: float = 300) -> Iterator[Monitoring]:
    """The operator and its Prometheus, ready and answering, until exit; then all of it removed from the node."""
    operator, reloader = node_images.prometheus_operator()
    prometheus = node_images.prometheus()
    node.load_images([operator, reloader, prometheus])
    created_crds = _apply_crds(node)
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
               *_operator(operator.reference, reloader.reference), *_prometheus(prometheus.reference)]
    try:
        _apply(node, objects)
        node.wait_ready("deployment", "prometheus-operator", NAMESPACE, timeout)
        _wait_prometheus(node, timeout)
        monitoring = Monitoring(node, _service_url(node))
        _wait_answering(monitoring)
        yield monitoring
    finally:
        _remove(node, objects, created_crds)


def _apply_crds(node) -> list[str]:
    """Apply the CRDs the operator ships; the names of those that were not there before (teardown removes them)."""
    before = set(node.kubectl("get", "crd", "-o", "name").stdout.split())
    node.api.install_crds(gobuild.prometheus_operator_crds())
    after = set(node.kubectl("get", "crd", "-o", "name").stdout.split())
    return sorted(after - before)


def _apply(node, objects: list[dict]) -> None:
    node.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-",
                 stdin=yaml.safe_dump_all(objects, sort_keys=False))


def _example(path: str) -> list[dict]:
    """Upstream's manifests under example/rbac/PATH in the operator's module source (beside the CRDs it ships)."""
    folder = gobuild.prometheus_operator_crds()[0].parent.parent / "rbac" / path
    return [o for file in sorted(folder.glob("*.yaml")) for o in yaml.safe_load_all(file.read_text()) if o]


def _in_namespace(objects: list[dict]) -> list[dict]:
    """Upstream's objects moved from `default` to NAMESPACE, bindings' subjects included."""
    for o in objects:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            o["metadata"]["namespace"] = NAMESPACE
        for subject in o.get("subjects", []):
            subject["namespace"] = NAMESPACE
    return objects


def _operator(image: str, reloader: str) -> list[dict]:
    """Upstream's operator Deployment and RBAC, running our build and putting our reloader beside each Prometheus."""
    objects = _in_namespace([o for o in _example("prometheus-operator")
                             if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment")])
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["image"], container["imagePullPolicy"] = image, "Never"
    container["args"] = [f"--prometheus-config-reloader={reloader}" if arg.startswith("--prometheus-config-reloader=")
                         else arg for arg in container["args"]]
    container["resources"]["requests"]["cpu"] = "50m"
    return objects


def _prometheus(image: str) -> list[dict]:
    """Prometheus' RBAC (upstream's), the Prometheus resource, its ClusterIP Service, the kubelet's ServiceMonitor."""
    rbac = _in_namespace([o for o in _example("prometheus") if o["kind"] != "Prometheus"])
    labels = {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": NAME}
    resource = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "image": image, "version": gobuild.PROMETHEUS_VERSION, "imagePullPolicy": "Never", "replicas": 1,
            "serviceAccountName": "prometheus",
            "serviceMonitorSelector": {"matchLabels": SELECTED}, "serviceMonitorNamespaceSelector": {},
            "ruleSelector": {"matchLabels": SELECTED}, "ruleNamespaceSelector": {},
            "scrapeInterval": SCRAPE_INTERVAL, "evaluationInterval": EVALUATION_INTERVAL, "retention": "1h",
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NAMESPACE},
               "spec": {"selector": labels, "ports": [{"name": "web", "port": PORT, "targetPort": "web"}]}}
    return [*rbac, resource, service, _kubelet_monitor()]


def _kubelet_monitor() -> dict:
    """kube-prometheus-stack's kubelet ServiceMonitor, its cAdvisor endpoint: the containers' CPU and memory.

    cAdvisor stamps its samples with the time it collected them, which Prometheus keeps (honorTimestamps);
    unlike the stack, the kubelet's certificate is verified: it is issued by the cluster CA for the node's IP.
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "kubelet", "namespace": NAMESPACE,
                     "labels": {**SELECTED, "app.kubernetes.io/name": "kubelet"}},
        "spec": {
            "jobLabel": "k8s-app",
            "namespaceSelector": {"matchNames": ["kube-system"]},
            "selector": {"matchLabels": {"app.kubernetes.io/name": "kubelet", "k8s-app": "kubelet"}},
            "endpoints": [{
                "port": "https-metrics", "scheme": "https", "path": "/metrics/cadvisor",
                "honorLabels": True, "honorTimestamps": True,
                "bearerTokenFile": f"{SERVICE_ACCOUNT}/token",
                "tlsConfig": {"caFile": f"{SERVICE_ACCOUNT}/ca.crt"},
                "relabelings": [{"action": "replace", "sourceLabels": ["__metrics_path__"],
                                 "targetLabel": "metrics_path"}],
            }],
        },
    }


def _wait_prometheus(node, timeout: float) -> None:
    """The operator makes the StatefulSet some seconds after the resource: wait for it to exist, then to be ready."""
    statefulset = f"prometheus-{NAME}"
    result = node.kubectl("-n", NAMESPACE, "wait", f"statefulset/{statefulset}", "--for=create",
                          f"--timeout={int(timeout)}s", check=False, timeout=timeout + 30)
    if result.returncode != 0:
        logs = node.kubectl("-n", NAMESPACE, "logs", "deployment/prometheus-operator", "--tail=40",
                            check=False).stdout
        raise AssertionError(f"prometheus-operator made no StatefulSet {statefulset} for Prometheus {NAME}: "
                             f"{result.stderr}\noperator log:\n{logs}")
    node.wait_ready("statefulset", statefulset, NAMESPACE, timeout)


def _wait_answering(monitoring: Monitoring, timeout: float = 60) -> None:
    """kube-proxy sends the Service to the pod a moment after the pod turns ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{monitoring.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prometheus is ready but did not answer at {monitoring.url}/-/ready, its Service, within "
                         f"{timeout:.0f} s: see kube-proxy's log in the node's folder")


def _service_url(node) -> str:
    address = node.kubectl("-n", NAMESPACE, "get", "service", NAME, "-o", "jsonpath={.spec.clusterIP}").stdout
    return f"http://{address}:{PORT}"


def _remove(node, objects: list[dict], crds: list[str]) -> None:
    """Everything prometheus_operator() made, and what the operator made from it (the node's own teardown would
    stop the pods, but the cluster-wide objects and CRDs would stay for the next module)."""
    # The Prometheus resource first, while its operator still runs to take down the StatefulSet.
    node.kubectl("-n", NAMESPACE, "delete", "prometheus", NAME, "--ignore-not-found", "--wait=true",
                 check=False, timeout=180)
    node.kubectl("delete", "--ignore-not-found", "--wait=true", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": list(reversed(objects))}), timeout=300)
    # The kubelet's Service and Endpoints are the operator's (--kubelet-service); it is gone now, so they stay gone.
    node.kubectl("-n", "kube-system", "delete", "service,endpoints", "kubelet", "--ignore-not-found")
    if crds:
        node.kubectl("delete", "--wait=true", *crds, timeout=180)

