"""k8s/kubeflow/ on a real kube-apiserver: what KFP's ServiceAccounts may do, asked of the server's RBAC authorizer.

Kubeflow itself is not installed here. What the train step's rights depend on is recreated as
Kubeflow 1.10 ships it: the aggregated ClusterRole `kubeflow-edit` (kubeflow/manifests
common/kubeflow-roles), each profile's `default-editor` ServiceAccount bound to it in its namespace
(the profile controller's RoleBinding), and standalone KFP's `pipeline-runner` in `kubeflow`. The
aggregation is real: kube-controller-manager (built with kube-apiserver, tests/support/kube.py, which
does not run it) runs with only its clusterrole-aggregation controller, as in a cluster.
SubjectAccessReviews then ask the API server, for each ServiceAccount, per verb and namespace.

The deploy step's rights (release-deployer.yaml) are derived here from the chart itself: every kind
charts/segflow renders with any of tests/support/helm.py's value sets (bar `helm test`'s hook), its
resource name as this API server's discovery spells it, so a kind added to the chart fails these tests
until the ClusterRole covers it.
"""

from __future__ import annotations

import os
import time

import pytest

from support import gobuild
from support.helm import VALUE_SETS, render_objects
from support.kube import K8S, SCHEMAS
from support.kuberay import kubeflow_rbac
from support.net import logged_process

PROFILE, OTHER_PROFILE = "kubeflow-user-alice", "kubeflow-user-bob"
MULTI_USER = f"system:serviceaccount:{PROFILE}:default-editor"
STANDALONE = "system:serviceaccount:kubeflow:pipeline-runner"
ALLOWED = [("create", "ray.io", "rayjobs"), ("get", "ray.io", "rayjobs"), ("list", "ray.io", "rayjobs"),
           ("watch", "ray.io", "rayjobs"), ("delete", "ray.io", "rayjobs"), ("get", "ray.io", "rayjobs/status"),
           ("get", "", "pods"), ("list", "", "pods"), ("get", "", "pods/log"), ("list", "", "events")]
REFUSED = [("update", "ray.io", "rayjobs"), ("patch", "ray.io", "rayjobs/status"), ("create", "ray.io", "rayclusters"),
           ("create", "", "pods"), ("delete", "", "pods"), ("create", "", "pods/exec"),
           ("create", "rbac.authorization.k8s.io", "rolebindings")]
# `helm upgrade` of the serving release (release-deployer.yaml): the chart's objects, Helm's release Secrets, and
# what its wait reads. The release's namespace when KFP runs standalone (the step's own in multi-user).
RELEASE_NAMESPACE = "segflow"
CHART_VERBS = ["get", "list", "watch", "create", "patch", "delete"]
RELEASE_STORAGE = [(verb, "", "secrets") for verb in ("get", "list", "create", "update", "delete")]
ROLLOUT_READS = [(verb, group, resource) for group, resource in (("", "pods"), ("apps", "replicasets"))
                 for verb in ("get", "list", "watch")]
DEPLOYER_REFUSED = [("create", "", "pods"), ("update", "apps", "deployments"), ("create", "apps", "daemonsets"),
                    ("create", "rbac.authorization.k8s.io", "roles"), ("create", "", "pods/exec")]


def _kubeflow(profiles: list[str]) -> list[dict]:
    """Kubeflow's own RBAC objects that segflow's rely on, and standalone KFP's pipeline-runner
    (in existing namespaces: a server-side dry run creates none)."""
    return [*kubeflow_rbac(profiles), {"apiVersion": "v1", "kind": "ServiceAccount",
                                       "metadata": {"name": "pipeline-runner", "namespace": "kubeflow"}}]


@pytest.fixture(scope="module")
def kubeflow(kube_api, tmp_path_factory):
    """Kubeflow's RBAC, then k8s/kubeflow/ applied as docs/pipelines.md says; the aggregation controller running."""
    from kubernetes import client

    profiles = [PROFILE, OTHER_PROFILE]
    kube_api.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                    for name in ["kubeflow", *profiles]])
    kube_api.apply(_kubeflow(profiles))
    kube_api.kubectl("apply", "--dry-run=server", "-f", str(K8S / "kubeflow"))
    kube_api.kubectl("apply", "-f", str(K8S / "kubeflow"))
    # standalone KFP's deploy step, for a release in namespace segflow: the RoleBinding docs/pipelines.md creates
    kube_api.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NAMESPACE}}])
    kube_api.kubectl("-n", RELEASE_NAMESPACE, "create", "rolebinding", "segflow-release-deployer", "--clusterrole",
                     "segflow-release-deployer", "--serviceaccount", "kubeflow:pipeline-runner", "--dry-run=client",
                     "-o", "yaml")
    kube_api.kubectl("-n", RELEASE_NAMESPACE, "create", "rolebinding", "segflow-release-deployer", "--clusterrole",
                     "segflow-release-deployer", "--serviceaccount", "kubeflow:pipeline-runner")
    manager = [str(gobuild.kube().binaries["kube-controller-manager"]), f"--kubeconfig={kube_api.kubeconfig}",
               "--controllers=clusterrole-aggregation", "--leader-elect=false", "--bind-address=127.0.0.1",
               "--secure-port=0", "--v=1"]
    log = tmp_path_factory.mktemp("controller-manager") / "kube-controller-manager.log"
    rbac = client.RbacAuthorizationV1Api(kube_api.client())
    with logged_process(manager, {**os.environ, "GOMAXPROCS": "2"}, log) as process:
        deadline = time.monotonic() + 120
        while not rbac.read_cluster_role("kubeflow-edit").rules:
            assert process.poll() is None, f"kube-controller-manager exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"kubeflow-edit not aggregated after 120 s: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield kube_api


@pytest.fixture(scope="module")
def release_rights(kubeflow) -> list[tuple[str, str, str]]:
    """(verb, group, resource) that `helm upgrade` of charts/segflow needs, from the chart rendered with every value
    set; resource names from the API server's discovery (with the ServiceMonitor and PrometheusRule CRDs)."""
    from kubernetes import dynamic

    kubeflow.install_crds([SCHEMAS / "prometheus-operator" / f"crd-{name}.yaml"
                           for name in ("servicemonitors", "prometheusrules")])
    kinds = {(o["apiVersion"], o["kind"]) for values in VALUE_SETS.values() for o in render_objects(values)
             if o["metadata"].get("annotations", {}).get("helm.sh/hook") != "test"}  # `helm test`'s, not upgrade's
    discovery = dynamic.DynamicClient(kubeflow.client()).resources
    resources = {(api_version.rpartition("/")[0], discovery.get(api_version=api_version, kind=kind).name)
                 for api_version, kind in kinds}
    return sorted({(verb, group, resource) for group, resource in resources for verb in CHART_VERBS}
                  | set(RELEASE_STORAGE) | set(ROLLOUT_READS))


def test_the_steps_rules_are_aggregated_into_kubeflow_edit(kubeflow, release_rights):
    """The train step's (rayjob-runner.yaml) and the deploy step's (release-deployer.yaml), nothing more."""
    from kubernetes import client

    rules = client.RbacAuthorizationV1Api(kubeflow.client()).read_cluster_role("kubeflow-edit").rules
    granted = {(group, resource, verb) for rule in rules for group in rule.api_groups for resource in rule.resources
               for verb in rule.verbs}
    assert granted == {(group, resource, verb) for verb, group, resource in ALLOWED + release_rights}


@pytest.mark.parametrize(("account", "home", "elsewhere"), [
    (MULTI_USER, PROFILE, [OTHER_PROFILE, "kubeflow", "default"]),
    (STANDALONE, "kubeflow", [PROFILE, "default"]),
], ids=["multi-user", "standalone"])
def test_kfps_account_drives_rayjobs_in_its_namespace_only(kubeflow, account, home, elsewhere):
    for verb, group, resource in ALLOWED:
        assert _allowed(kubeflow, account, verb, group, resource, home), (verb, resource, home)
        for namespace in elsewhere:
            assert not _allowed(kubeflow, account, verb, group, resource, namespace), (verb, resource, namespace)
        assert not _allowed(kubeflow, account, verb, group, resource, ""), (verb, resource, "cluster-wide")


@pytest.mark.parametrize("account", [MULTI_USER, STANDALONE], ids=["multi-user", "standalone"])
def test_kfps_account_gets_nothing_else_from_segflow(kubeflow, account):
    """What segflow adds stops at its rules (Kubeflow's own kubeflow-edit grants profiles more in a real install)."""
    home = PROFILE if account == MULTI_USER else "kubeflow"
    for verb, group, resource in REFUSED:
        assert not _allowed(kubeflow, account, verb, group, resource, home), (verb, resource)


@pytest.mark.parametrize(("account", "home", "elsewhere"), [
    (MULTI_USER, PROFILE, [OTHER_PROFILE, RELEASE_NAMESPACE, "default"]),
    (STANDALONE, RELEASE_NAMESPACE, [PROFILE, "kubeflow", "default"]),
], ids=["multi-user", "standalone"])
def test_kfps_account_may_upgrade_the_serving_release_in_its_namespace_only(kubeflow, release_rights, account, home,
                                                                            elsewhere):
    """Multi-user: the release in the profile namespace; standalone: in segflow, through the documented RoleBinding
    (in kubeflow, standalone's account keeps only the train step's rights, which read pods too)."""
    for verb, group, resource in release_rights:
        assert _allowed(kubeflow, account, verb, group, resource, home), (verb, group, resource, home)
        for namespace in elsewhere:
            if namespace == "kubeflow" and (verb, group, resource) in ALLOWED:
                continue
            assert not _allowed(kubeflow, account, verb, group, resource, namespace), (verb, resource, namespace)
        assert not _allowed(kubeflow, account, verb, group, resource, ""), (verb, resource, "cluster-wide")
    for verb, group, resource in DEPLOYER_REFUSED:
        assert not _allowed(kubeflow, account, verb, group, resource, home), (verb, group, resource, home)


def test_standalone_kfp_reads_no_secret_where_it_runs(kubeflow):
    """The deploy step's Secrets are the release's namespace's, not kubeflow's (KFP's own credentials live there)."""
    assert not _allowed(kubeflow, STANDALONE, "get", "", "secrets", "kubeflow")


def _allowed(cluster, user: str, verb: str, group: str, resource: str, namespace: str) -> bool:
    """The API server's answer to a SubjectAccessReview for USER, a ServiceAccount (with its groups)."""
    from kubernetes import client

    account_namespace = user.split(":")[2]
    resource, _, subresource = resource.partition("/")
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, groups=["system:serviceaccounts", f"system:serviceaccounts:{account_namespace}",
                           "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                        subresource=subresource or None,
                                                        namespace=namespace or None)))
    answer = client.AuthorizationV1Api(cluster.client()).create_subject_access_review(review)
    return bool(answer.status.allowed)
