"""segflow.serving.release: the deploy step's `helm upgrade` of the chart's release, against a real kube-apiserver.

The Helm SDK (helm-python-sdk) upgrades releases of charts/segflow that an admin installed with
`helm install` on the session's API server (tests/support/kube.py), as the ServiceAccount a pipeline step
runs as, with a token the API server issued and only k8s/kubeflow/release-deployer.yaml's rights (or none).

Stand-in, said here: that API server has no kubelet and no controller-manager, so no pod ever starts and no
Deployment status moves on its own. That is the real case of a rollout that never finishes (the rollback
test). For the rollout that does finish, the test writes the Deployment's and PodDisruptionBudget's status as
their controllers would once the new pods are ready; Helm's own wait (kstatus) reads it. The on-node test
(tests/charts) runs the same step with real pods.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from segflow.errors import ServingError
from segflow.serving import release as release_module
from segflow.serving.release import ROLE, find_chart, upgrade_release
from support.helm import CHART, helm_cli
from support.kube import K8S, SCHEMAS

NAMESPACE = "segflow-release"
ARCHIVE = "s3://segflow/tiny/archive"
INSTALLED = {"model": {"name": "tiny", "archiveUri": ARCHIVE, "archiveVersion": "v1"}}


@pytest.fixture(scope="module")
def cluster(kube_api):
    """The release's namespace, the chart's monitoring kinds (CRDs) and the deployer ClusterRole."""
    kube_api.install_crds([SCHEMAS / "prometheus-operator" / f"crd-{name}.yaml"
                           for name in ("servicemonitors", "prometheusrules")])
    kube_api.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    kube_api.kubectl("apply", "-f", str(K8S / "kubeflow" / "release-deployer.yaml"))
    return kube_api


def _step_kubeconfig(cluster, folder: Path, account: str, bound: bool) -> Path:
    """A kubeconfig with a token the API server issued to ACCOUNT (with the deployer's RoleBinding if BOUND)."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.client())
    objects = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": NAMESPACE}}]
    if bound:
        objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": {"name": f"{account}-deployer", "namespace": NAMESPACE},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
                        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]})
    cluster.apply(objects)
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                                  expiration_seconds=3600))
    token = core.create_namespaced_service_account_token(account, NAMESPACE, request).status.token
    path = folder / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "step",
        "clusters": [{"name": "test", "cluster": {"server": cluster.url, "certificate-authority": str(cluster.ca)}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "step", "context": {"cluster": "test", "user": account, "namespace": NAMESPACE}}]}))
    return path


@pytest.fixture(scope="module")
def deployer(cluster, tmp_path_factory) -> Path:
    return _step_kubeconfig(cluster, tmp_path_factory.mktemp("deployer"), "deployer", bound=True)


def _install(cluster, name: str) -> None:
    """`helm install NAME charts/segflow` by the admin, serving archive version v1 (no wait: no pod starts here)."""
    helm_cli(cluster.kubeconfig, "install", name, str(CHART), "-n", NAMESPACE, values=INSTALLED)


def _archive_source(cluster, name: str) -> str:
    """What the Deployment's fetch-model init container fetches: ARCHIVE/VERSION."""
    from kubernetes import client

    deployment = client.AppsV1Api(cluster.client()).read_namespaced_deployment(name, NAMESPACE)
    (fetch,) = [c for c in deployment.spec.template.spec.init_containers if c.name == "fetch-model"]
    (source,) = [a for a in fetch.command if a.startswith("s3://")]
    return source


def test_the_chart_is_the_named_one_else_the_checkouts_else_the_images(monkeypatch, tmp_path):
    monkeypatch.delenv(release_module.CHART_ENV, raising=False)
    assert find_chart() == CHART  # an editable install: the checkout's charts/segflow
    monkeypatch.setenv(release_module.CHART_ENV, str(CHART))
    assert find_chart() == CHART
    monkeypatch.setenv(release_module.CHART_ENV, str(tmp_path))
    with pytest.raises(ServingError, match=rf"no Helm chart at SEGFLOW_CHART={tmp_path} .*set SEGFLOW_CHART"):
        find_chart()


def test_an_installed_package_uses_the_chart_the_image_carries(monkeypatch, tmp_path):
    """Where the checkout's chart is absent (a wheel install), the image's /opt/segflow/charts/segflow; neither: why."""
    monkeypatch.delenv(release_module.CHART_ENV, raising=False)
    monkeypatch.setattr(release_module, "CHECKOUT_CHART", tmp_path / "site-packages" / "charts" / "segflow")
    monkeypatch.setattr(release_module, "IMAGE_CHART", CHART)
    assert find_chart() == CHART
    monkeypatch.setattr(release_module, "IMAGE_CHART", tmp_path / "opt" / "charts" / "segflow")
    with pytest.raises(ServingError, match="no Helm chart at .*site-packages.* nor .*opt.*segflow image"):
        find_chart()


def test_a_missing_release_names_the_helm_install_to_run(cluster, deployer, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(deployer))
    with pytest.raises(ServingError, match=rf"no deployed Helm release 'absent' in namespace '{NAMESPACE}'.*"
                                           rf"helm install absent charts/segflow -n {NAMESPACE}"):
        upgrade_release(ARCHIVE, "v2", "absent", NAMESPACE, timeout_s=5)


def test_an_account_without_the_role_is_told_which_to_grant(cluster, tmp_path, monkeypatch):
    _install(cluster, "segflow-guarded")
    monkeypatch.setenv("KUBECONFIG", str(_step_kubeconfig(cluster, tmp_path, "unbound", bound=False)))
    with pytest.raises(ServingError, match=rf"refused Helm access to release {NAMESPACE}/segflow-guarded.*"
                                           rf"forbidden.*ClusterRole {ROLE}.*"
                                           r"kubectl apply -f k8s/kubeflow/release-deployer"):
        upgrade_release(ARCHIVE, "v2", "segflow-guarded", NAMESPACE, timeout_s=5)
    assert _archive_source(cluster, "segflow-guarded") == f"{ARCHIVE}/v1"


def test_a_rollout_that_does_not_finish_is_rolled_back_to_the_serving_version(cluster, deployer, monkeypatch):
    """No pod becomes ready here: Helm's wait times out, and rollback_on_failure restores revision 1's objects."""
    import helm_python

    _install(cluster, "segflow-stuck")
    monkeypatch.setenv("KUBECONFIG", str(deployer))
    with pytest.raises(ServingError) as failed:
        upgrade_release(ARCHIVE, "v2", "segflow-stuck", NAMESPACE, timeout_s=3)
    message = str(failed.value)
    assert "did not finish within 3 s; Helm rolled it back" in message, message
    assert "revision 3" in message and f"serves archive version v1 of {ARCHIVE}" in message, message
    assert f"Deployment/{NAMESPACE}/segflow-stuck not ready" in message, message
    assert f"kubectl -n {NAMESPACE} describe pods" in message, message
    assert _archive_source(cluster, "segflow-stuck") == f"{ARCHIVE}/v1"  # the pods' template: the previous version
    with helm_python.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=NAMESPACE) as helm:
        history = helm.history("segflow-stuck")
    # revision 3 is the rollback; it is "failed" only because its own wait cannot finish here either (no kubelet)
    assert [(r["revision"], r["status"]) for r in history] == [(1, "deployed"), (2, "failed"), (3, "failed")]


class Controllers(threading.Thread):
    """Stands in for the Deployment and PodDisruptionBudget controllers: each new generation is at once ready."""

    def __init__(self, cluster, name: str):
        super().__init__(daemon=True)
        self.cluster, self.name, self.stop = cluster, name, threading.Event()

    def run(self) -> None:
        from kubernetes import client

        api = self.cluster.client()
        apps, policy = client.AppsV1Api(api), client.PolicyV1Api(api)
        while not self.stop.wait(0.2):
            deployment = apps.read_namespaced_deployment(self.name, NAMESPACE)
            generation, replicas = deployment.metadata.generation, deployment.spec.replicas
            if (deployment.status.observed_generation or 0) < generation:
                apps.patch_namespaced_deployment_status(self.name, NAMESPACE, {"status": {
                    "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas, "conditions": [
                        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}})
            budget = policy.read_namespaced_pod_disruption_budget(self.name, NAMESPACE)
            if (budget.status.observed_generation or 0) < budget.metadata.generation:
                policy.patch_namespaced_pod_disruption_budget_status(self.name, NAMESPACE, {"status": {
                    "observedGeneration": budget.metadata.generation, "currentHealthy": replicas,
                    "desiredHealthy": replicas - 1, "disruptionsAllowed": 1, "expectedPods": replicas}})


def test_the_deploy_step_upgrades_the_release_named_at_compile_time(cluster, deployer, monkeypatch, tmp_path):
    """release_archive as the step runs it: SEGFLOW_HELM_RELEASE set, the namespace the step's own."""
    from kfp import dsl

    from segflow.components._steps import release_archive

    _install(cluster, "segflow-served")
    for name, value in {"KUBECONFIG": str(deployer), "SEGFLOW_HELM_RELEASE": "segflow-served",
                        "SEGFLOW_NAMESPACE": NAMESPACE}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SEGFLOW_HELM_NAMESPACE", raising=False)
    archive = dsl.Artifact(uri=ARCHIVE.replace("s3://", "minio://"), metadata={"version": "v2"})
    release = dsl.Artifact(uri=str(tmp_path / "release"))
    controllers = Controllers(cluster, "segflow-served")
    controllers.start()
    returned: list = []

    def run_step() -> None:
        try:
            returned.append(release_archive(archive, "", release))
        except Exception as exc:  # noqa: BLE001 (shown by the assertion below)
            returned.append(exc)

    step = threading.Thread(target=run_step, daemon=True)
    step.start()
    step.join(timeout=120)  # the step's own rollout timeout is 15 minutes
    controllers.stop.set()
    assert returned == [ARCHIVE], "the upgrade did not return within 120 s with the rollout's status written"
    assert release.metadata == {"mode": "helm-release", "release": "segflow-served", "namespace": NAMESPACE,
                                "revision": 2, "status": "deployed", "previous_version": "v1", "previous_uri": ARCHIVE,
                                "archive_uri": ARCHIVE}
    assert _archive_source(cluster, "segflow-served") == f"{ARCHIVE}/v2"


def test_the_deploy_step_needs_a_namespace_for_the_release(monkeypatch, tmp_path):
    from kfp import dsl

    from segflow.components._steps import release_archive

    monkeypatch.setenv("SEGFLOW_HELM_RELEASE", "segflow")
    for name in ("SEGFLOW_HELM_NAMESPACE", "SEGFLOW_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    archive = dsl.Artifact(uri=str(tmp_path / "archive"), metadata={"version": "v2"})
    with pytest.raises(ServingError, match="SEGFLOW_HELM_RELEASE=segflow names no namespace.*--helm-release segflow/"):
        release_archive(archive, "", dsl.Artifact(uri=str(tmp_path / "release")))
