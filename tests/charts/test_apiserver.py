"""charts/segflow applied to a real kube-apiserver (built from k8s.io/kubernetes, with etcd; tests/support/kube.py).

For every value set that test_render checks offline, the rendered objects go through the server:
a server-side dry run, then a server-side apply, with strict field validation (an unknown field
is refused), defaulting and admission; what is read back holds everything the chart wrote.

Only the API server runs here, so no Pod starts; the chart's pods run on a real node in
test_cluster.py, and docs/deploy.md's commands in test_deploy_docs.py. Where no kube-apiserver can
be built these tests skip and say why.
"""

from __future__ import annotations

import copy
import ipaddress

import pytest
import yaml

from support.helm import VALUE_SETS, find, render_objects
from support.kube import SERVICE_RANGE, not_as_written

# Helm's install order (pkg/release/util/kind_sorter.go) for the kinds the chart makes; hooks
# (the MinIO bucket Job, the test Pod) after the release's objects, as helm install creates them.
INSTALL_ORDER = ["Namespace", "NetworkPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "ConfigMap",
                 "PersistentVolumeClaim", "Role", "RoleBinding", "Service", "Pod", "Deployment",
                 "HorizontalPodAutoscaler", "Job", "Ingress"]


@pytest.fixture(scope="module")
def cluster(kube_api):
    kube_api.install_crds()
    return kube_api


def in_install_order(objects: list[dict]) -> list[dict]:
    def key(obj: dict) -> tuple:
        hook = "helm.sh/hook" in obj["metadata"].get("annotations", {})
        kind = obj["kind"]
        return hook, INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)

    return sorted(objects, key=key)


def namespace(cluster, name: str) -> None:
    """A namespace with the `default` ServiceAccount that kube-controller-manager would add (none runs here)."""
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("-n", name, "create", "serviceaccount", "default")


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_the_server_accepts_defaults_and_keeps_every_object(cluster, value_set):
    ns = f"chart-{value_set.replace('_', '-')}"
    namespace(cluster, ns)
    objects = in_install_order(render_objects(VALUE_SETS[value_set], namespace=ns))
    cluster.apply(objects)
    listed = cluster.kubectl("get", "-f", "-", "-o", "yaml", stdin=yaml.safe_dump_all(objects)).stdout
    stored = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load(listed)["items"]}
    assert len(stored) == len(objects)
    for obj in objects:
        back = stored[obj["kind"], obj["metadata"]["name"]]
        written = {k: v for k, v in obj.items() if k not in ("metadata", "stringData")}
        assert not_as_written(written, {k: v for k, v in back.items() if k != "metadata"}) == [], obj["kind"]
        assert not_as_written(obj["metadata"].get("labels", {}), back["metadata"].get("labels", {})) == []
    _assert_defaulted(stored)


def _assert_defaulted(stored: dict) -> None:
    """What the server fills in that the chart leaves out: its defaulting ran."""
    deployment = next(o for (kind, _), o in stored.items() if kind == "Deployment" and "torchserve" in str(o))
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["schedulerName"] == "default-scheduler" and pod["dnsPolicy"] == "ClusterFirst"
    container = pod["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log" and container["imagePullPolicy"]
    service = next(o for (kind, name), o in stored.items() if kind == "Service" and "minio" not in name)
    assert ipaddress.ip_address(service["spec"]["clusterIP"]) in ipaddress.ip_network(SERVICE_RANGE)
    for (kind, name), obj in stored.items():
        if kind == "Pod":  # admission ran: the not-ready/unreachable tolerations every Pod gets
            tolerations = {t["key"] for t in obj["spec"]["tolerations"]}
            assert {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} <= tolerations, name
            assert obj["status"]["phase"] == "Pending", name  # stored, never scheduled: no kubelet here


def test_a_misspelt_field_is_refused_by_the_server(cluster):
    namespace(cluster, "chart-typo")
    objects = render_objects(namespace="chart-typo")
    deployment = copy.deepcopy(find(objects, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    monitor = copy.deepcopy(find(objects, "ServiceMonitor"))
    monitor["spec"]["endpoint"] = monitor["spec"]["endpoints"]
    for obj, field in ((deployment, ".readinessProbes"), (monitor, ".spec.endpoint")):
        refused = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(obj),
                                  check=False)
        assert refused.returncode != 0 and f"{field}: field not declared in schema" in refused.stderr, refused.stderr
