"""k8s/kubeflow/ on a real kube-apiserver: what KFP's ServiceAccounts may do, asked of the server's RBAC authorizer.

Kubeflow itself is not installed here. What the train step's rights depend on is recreated as
Kubeflow 1.10 ships it: the aggregated ClusterRole `kubeflow-edit` (kubeflow/manifests
common/kubeflow-roles), each profile's `default-editor` ServiceAccount bound to it in its namespace
(the profile controller's RoleBinding), and standalone KFP's `pipeline-runner` in `kubeflow`. The
aggregation is real: kube-controller-manager (built with kube-apiserver, tests/support/kube.py, which
does not run it) runs with only its clusterrole-aggregation controller, as in a cluster.
SubjectAccessReviews then ask the API server, for each ServiceAccount, per verb and namespace.
"""

from __future__ import annotations

import os
import time

import pytest

from support import gobuild
from support.kube import K8S
from support.net import logged_process

PROFILE, OTHER_PROFILE = "kubeflow-user-alice", "kubeflow-user-bob"
MULTI_USER = f"system:serviceaccount:{PROFILE}:default-editor"
STANDALONE = "system:serviceaccount:kubeflow:pipeline-runner"
ALLOWED = [("create", "ray.io", "rayjobs"), ("get", "ray.io", "rayjobs"), ("list", "ray.io", "rayjobs"),
           ("watch", "ray.io", "rayjobs"), ("delete", "ray.io", "rayjobs"), ("get", "ray.io", "rayjobs/status"),
           ("get", "", "pods"), ("list", "", "pods"), ("get", "", "pods/log"), ("list", "", "events")]
REFUSED = [("update", "ray.io", "rayjobs"), ("patch", "ray.io", "rayjobs/status"), ("create", "ray.io", "rayclusters"),
           ("create", "", "pods"), ("delete", "", "pods"), ("create", "", "pods/exec"), ("get", "", "secrets"),
           ("create", "rbac.authorization.k8s.io", "rolebindings")]


def _kubeflow(profiles: list[str]) -> list[dict]:
    """Kubeflow's own RBAC objects that segflow's rely on, as its manifests and profile controller create them
    (in existing namespaces: a server-side dry run creates none)."""
    edit = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kubeflow-edit"},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"rbac.authorization.kubeflow.org/aggregate-to-kubeflow-edit": "true"}}]},
            "rules": []}
    objects = [edit,
               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "pipeline-runner",
                                                                           "namespace": "kubeflow"}}]
    for profile in profiles:
        objects += [{"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": "default-editor", "namespace": profile}},
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "default-editor", "namespace": profile},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                 "name": "kubeflow-edit"},
                     "subjects": [{"kind": "ServiceAccount", "name": "default-editor", "namespace": profile}]}]
    return objects


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


def test_the_train_steps_rules_are_aggregated_into_kubeflow_edit(kubeflow):
    from kubernetes import client

    rules = client.RbacAuthorizationV1Api(kubeflow.client()).read_cluster_role("kubeflow-edit").rules
    granted = {(group, resource, verb) for rule in rules for group in rule.api_groups for resource in rule.resources
               for verb in rule.verbs}
    assert granted == {(group, resource, verb) for verb, group, resource in ALLOWED}


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
