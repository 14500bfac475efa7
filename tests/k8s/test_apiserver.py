"""k8s/ and the CRDs it needs on a real kube-apiserver (built from k8s.io/kubernetes, with etcd; tests/support/kube.py).

The KubeRay and prometheus-operator CRDs from ../shared/schemas are installed, k8s/ is applied
as docs/deploy.md says, and SubjectAccessReviews ask the server's RBAC authorizer what the
pipeline runner's ServiceAccount may do. No kubelet or KubeRay operator runs: the RayJob is
stored, not run. Where no kube-apiserver can be built these tests skip and say why; the schema
checks in test_rayjob.py still run.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from segflow.components.images import SEGFLOW
from support.kube import K8S, not_as_written

RUNNER = "system:serviceaccount:segflow:segflow-pipeline-runner"
RUNNER_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:segflow", "system:authenticated"]


@pytest.fixture(scope="module")
def cluster(kube_api):
    """k8s/ applied as docs/deploy.md says, then its example RayJob (`kubectl apply -f k8s/examples/...`)."""
    kube_api.install_crds()
    kube_api.apply_k8s()
    kube_api.kubectl("apply", "-f", str(K8S / "examples" / "rayjob-train.yaml"))
    return kube_api


def test_the_crds_install_and_serve_their_kinds(kube_api):
    names = kube_api.install_crds()
    assert set(names) == {"rayjobs.ray.io", "rayclusters.ray.io", "servicemonitors.monitoring.coreos.com",
                          "podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"}
    resources = kube_api.kubectl("api-resources", "--api-group=ray.io", "-o", "name").stdout.split()
    assert set(resources) == {"rayjobs.ray.io", "rayclusters.ray.io"}


def test_k8s_and_its_example_apply_and_the_rayjob_is_stored_as_written(cluster):
    stored = yaml.safe_load(cluster.kubectl("-n", "segflow", "get", "rayjob", "segflow-train", "-o", "yaml").stdout)
    written = next(d for d in yaml.safe_load_all((K8S / "examples" / "rayjob-train.yaml").read_text()) if d)
    assert stored["spec"]["entrypoint"] == written["spec"]["entrypoint"]
    # Nothing pruned: a field the CRD does not know would be dropped silently by a lenient server.
    assert not_as_written(written["spec"], stored["spec"]) == []
    head = stored["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == SEGFLOW  # make image-tag writes the example's tag
    kinds = cluster.kubectl("-n", "segflow", "get", "serviceaccounts,roles,rolebindings", "-o", "name").stdout.split()
    assert {"serviceaccount/segflow-pipeline-runner",
            "role.rbac.authorization.k8s.io/segflow-rayjob-runner",
            "rolebinding.rbac.authorization.k8s.io/segflow-rayjob-runner"} <= set(kinds)


def test_a_misspelt_rayjob_field_is_refused_by_the_server(cluster):
    job = copy.deepcopy(next(d for d in yaml.safe_load_all((K8S / "examples" / "rayjob-train.yaml").read_text()) if d))
    job["metadata"]["name"] = "segflow-typo"
    job["spec"]["shutdownAfterJobFinish"] = job["spec"].pop("shutdownAfterJobFinishes")
    refused = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(job),
                              check=False)
    assert refused.returncode != 0 and ".spec.shutdownAfterJobFinish: field not declared in schema" in refused.stderr


@pytest.mark.parametrize("verb", ["create", "get", "list", "watch", "delete"])
def test_the_pipeline_runner_drives_rayjobs_in_its_namespace_only(cluster, verb):
    assert _allowed(cluster, verb, "rayjobs", "segflow")
    assert not _allowed(cluster, verb, "rayjobs", "default")
    assert not _allowed(cluster, verb, "rayjobs", "")  # cluster-wide


@pytest.mark.parametrize(("verb", "resource", "group"), [
    ("create", "pods", ""), ("get", "secrets", ""), ("create", "rayclusters", "ray.io"),
    ("update", "rayjobs", "ray.io"), ("patch", "rayjobs/status", "ray.io"), ("create", "rolebindings",
                                                                            "rbac.authorization.k8s.io")])
def test_the_pipeline_runner_may_do_nothing_else(cluster, verb, resource, group):
    assert not _allowed(cluster, verb, resource, "segflow", group)


def test_kubectl_auth_can_i_agrees(cluster):
    """What an operator types to check the runner's rights (docs/deploy.md's kubectl)."""
    def can_i(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", f"--as={RUNNER}", *args, check=False).stdout.strip()

    assert can_i("create", "rayjobs.ray.io", "-n", "segflow") == "yes"
    assert can_i("watch", "rayjobs.ray.io", "-n", "segflow") == "yes"
    assert can_i("create", "rayjobs.ray.io", "-n", "default") == "no"
    assert can_i("get", "secrets", "-n", "segflow") == "no"


def _allowed(cluster, verb: str, resource: str, namespace: str, group: str = "ray.io") -> bool:
    """The API server's answer to a SubjectAccessReview for the pipeline runner's ServiceAccount."""
    from kubernetes import client

    resource, _, subresource = resource.partition("/")
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=RUNNER, groups=RUNNER_GROUPS,
        resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                        subresource=subresource or None,
                                                        namespace=namespace or None)))
    answer = client.AuthorizationV1Api(cluster.client()).create_subject_access_review(review)
    return bool(answer.status.allowed)

