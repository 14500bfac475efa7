"""The chart's serving release upgraded to a new archive version, as the pipeline's deploy step does in a cluster.

The chart (charts/segflow) exposes no management API: its replicas fetch the archive from MinIO at
start, so a new version goes live by `helm upgrade RELEASE CHART -n NAMESPACE --reuse-values --set
model.archiveUri=... --set model.archiveVersion=...`, which rolls the pods one at a time. This module
runs exactly that through the Helm SDK (helm-python-sdk, Helm 4; no `helm` binary), and waits until
the rollout is done.

A pipeline must never leave a half-rolled release behind: the upgrade runs with Helm's
rollback_on_failure (the CLI's --rollback-on-failure, Helm 3's --atomic). When the new pods do not
become ready in time (an archive that fails its sha256 check, a model that does not load), Helm
rolls the release back to the revision that served before, so the previous version keeps answering
and the step fails with what Helm saw.

Helm 4 applies server-side and names the field manager after the program: basename(argv[0])
(helm.sh/helm/v4 pkg/kube/client.go, getManagedFieldsManager). A release installed with the helm
CLI is owned by "helm"; upgraded from Python it would be "python3", and the API server refuses the
apply with conflicts on every field the chart sets. So the upgrade runs in a child Python process
whose argv[0] is "helm": the step owns the same fields a person's `helm install` / `helm upgrade`
does, and either can follow the other.

Cluster access is the usual one: KUBECONFIG when set (read here: the Helm SDK's Go runtime only
sees the environment the process started with), else ~/.kube/config, else the pod's ServiceAccount
(client-go's in-cluster config when KUBERNETES_SERVICE_HOST is set), which is how the step runs.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from segflow.errors import ServingError

CHART_ENV = "SEGFLOW_CHART"
# The release the deploy step upgrades (`segflow pipeline compile --helm-release NAME[/NAMESPACE]`); its namespace
# defaults to the step's own (SEGFLOW_NAMESPACE, from the downward API).
RELEASE_ENV, NAMESPACE_ENV = "SEGFLOW_HELM_RELEASE", "SEGFLOW_HELM_NAMESPACE"
IMAGE_CHART = Path("/opt/segflow/charts/segflow")  # where the segflow image carries the chart (its WORKDIR)
# The editable install's chart: serving/ sits beside charts/ in a checkout.
CHECKOUT_CHART = Path(__file__).resolve().parents[1] / "charts" / "segflow"
ROLE = "segflow-release-deployer"  # k8s/kubeflow/release-deployer.yaml
MAX_HISTORY = 10  # revisions Helm keeps, as the helm CLI's upgrade does by default
DEFAULT_TIMEOUT_S = 900  # a replica fetches and loads its archive within torchserve.startupSeconds (600 s)
FIELD_MANAGER = "helm"  # the argv[0] the upgrade runs under: the helm CLI's field manager
# The child's program. Python finds its venv from argv[0], which is "helm" there: it adds this process's
# site-packages itself (.pth files included: an editable install's finder), then runs this module.
_CHILD = ("import runpy, site, sys\n"
          "for folder in sys.argv.pop(1).split(':'):\n"
          "    site.addsitedir(folder)\n"
          f"runpy.run_module({__name__!r}, run_name='__main__', alter_sys=True)\n")


@dataclass(frozen=True)
class ReleaseUpgrade:
    """What a user needs after the upgrade: which revision serves what, and what served before."""

    release: str
    namespace: str
    revision: int
    status: str  # Helm's, "deployed" once the rollout is done
    archive_uri: str
    archive_version: str
    previous_uri: str
    previous_version: str  # "" when the release served the latest archive (no version pinned)


def find_chart() -> Path:
    """SEGFLOW_CHART, else the checkout's charts/segflow (editable install), else the image's; refused if none."""
    named = os.environ.get(CHART_ENV)
    candidates = [Path(named)] if named else [CHECKOUT_CHART, IMAGE_CHART]
    for chart in candidates:
        if (chart / "Chart.yaml").is_file():
            return chart
    where = f"{CHART_ENV}={named}" if named else f"{CHECKOUT_CHART} nor {IMAGE_CHART}"
    raise ServingError(f"no Helm chart at {where} (no Chart.yaml): set {CHART_ENV} to the folder of charts/segflow, "
                       "or run the segflow image, which carries it at /opt/segflow/charts/segflow")


def upgrade_release(archive_uri: str, archive_version: str, release: str, namespace: str, *,
                    chart: Path | None = None, timeout_s: int = DEFAULT_TIMEOUT_S) -> ReleaseUpgrade:
    """`helm upgrade RELEASE CHART -n NAMESPACE --reuse-values` to serve ARCHIVE_VERSION of ARCHIVE_URI, waited for.

    A rollout that does not finish within TIMEOUT_S is rolled back by Helm (the previous version keeps
    serving) and raises ServingError, as do a missing release and missing rights. Runs in a child
    process named FIELD_MANAGER (see the module's docstring).
    """
    request = {"archive_uri": archive_uri, "archive_version": archive_version, "release": release,
               "namespace": namespace, "chart": str(chart or find_chart()), "timeout_s": timeout_s}
    with tempfile.TemporaryDirectory(prefix="segflow-helm-") as folder:
        answer = Path(folder) / "answer.json"
        # cwd: a folder of its own, so that no checkout's segflow/ in the caller's cwd shadows the installed package
        env = os.environ | ({"KUBECONFIG": os.pathsep.join(str(Path(p).resolve()) for p in
                                                           os.environ["KUBECONFIG"].split(os.pathsep))}
                            if os.environ.get("KUBECONFIG") else {})
        done = subprocess.run([FIELD_MANAGER, "-c", _CHILD, os.pathsep.join(site.getsitepackages()),
                               json.dumps(request), str(answer)],
                              executable=sys.executable, capture_output=True, text=True, cwd=folder, env=env)
        if not answer.is_file():
            raise ServingError(f"the Helm upgrade of {namespace}/{release} stopped (exit {done.returncode}) without "
                               f"an answer: {(done.stderr or done.stdout).strip()[-2000:]}")
        result = json.loads(answer.read_text())
    if "error" in result:
        raise ServingError(result["error"])
    return ReleaseUpgrade(**result)


def _upgrade(archive_uri: str, archive_version: str, release: str, namespace: str, chart: str,
             timeout_s: int) -> ReleaseUpgrade:
    """The upgrade itself, in the process named FIELD_MANAGER."""
    import helm_python

    with _config(namespace) as helm:
        previous = _served(helm, release, namespace)
        values = {"model": {"archiveUri": archive_uri, "archiveVersion": archive_version}}
        try:
            done = helm.upgrade(chart, release, values, namespace=namespace, reuse_values=True, wait="watcher",
                                timeout=timeout_s, rollback_on_failure=True, max_history=MAX_HISTORY,
                                description=f"segflow deploy: archive version {archive_version}")
        except helm_python.HelmError as exc:
            raise _upgrade_failed(exc, helm, release, namespace, archive_version, timeout_s) from None
    return ReleaseUpgrade(release, namespace, int(done["revision"]), str(done["status"]), archive_uri,
                          archive_version, *previous)


def _config(namespace: str):
    import helm_python

    kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return helm_python.Config(kubeconfig_path=kubeconfig or None, namespace=namespace)


def _served(helm, release: str, namespace: str) -> tuple[str, str]:
    """The archive URI and version the release serves now, from its computed values."""
    import helm_python

    try:
        return _model(helm, release)
    except helm_python.HelmError as exc:
        raise _refused(exc, release, namespace) from None


def _model(helm, release: str) -> tuple[str, str]:
    model = helm.get_values(release, all_values=True).get("model", {})
    return str(model.get("archiveUri", "")), str(model.get("archiveVersion", ""))


def _refused(exc, release: str, namespace: str) -> ServingError:
    """A clear error for what a user can fix before any upgrade: the cluster, the rights, the release."""
    import helm_python

    detail = str(exc)
    if isinstance(exc, helm_python.HelmKubeError):
        return ServingError(f"cannot reach the Kubernetes API for release {namespace}/{release} ({detail}): in a "
                            "pod the step uses its ServiceAccount; elsewhere point KUBECONFIG at the cluster")
    if "forbidden" in detail:
        return ServingError(
            f"the Kubernetes API refused Helm access to release {namespace}/{release}: {detail}. Grant the step's "
            f"ServiceAccount the ClusterRole {ROLE} in {namespace}: `kubectl apply -f "
            "k8s/kubeflow/release-deployer.yaml` (multi-user Kubeflow: aggregated into kubeflow-edit, so the "
            f"release must be in the profile namespace), and for standalone KFP also `kubectl -n {namespace} create "
            f"rolebinding {ROLE} --clusterrole {ROLE} --serviceaccount kubeflow:pipeline-runner`")
    if isinstance(exc, helm_python.HelmNotFoundError) or "not found" in detail or "no deployed releases" in detail:
        return ServingError(
            f"no deployed Helm release {release!r} in namespace {namespace!r} ({detail}): install the chart first "
            f"(docs/deploy.md): `helm install {release} charts/segflow -n {namespace} --set model.name=NAME "
            "--set model.archiveUri=s3://BUCKET/PREFIX`, or compile with --helm-release NAME/NAMESPACE of yours")
    return ServingError(f"Helm could not read release {namespace}/{release}: {detail}")


def _upgrade_failed(exc, helm, release: str, namespace: str, version: str, timeout_s: int) -> ServingError:
    """What the failed upgrade left: Helm rolled back to the previous revision, which keeps serving."""
    import helm_python

    detail = str(exc)
    if "forbidden" in detail or isinstance(exc, helm_python.HelmKubeError):
        return _refused(exc, release, namespace)
    try:
        now, (uri, served) = helm.status(release), _model(helm, release)
        state = (f"its newest revision {now['revision']} ({now['status']}) serves archive version "
                 f"{served or '(latest)'} of {uri}")
    except helm_python.HelmError as status_error:
        state = f"its state could not be read ({status_error})"
    reason = (f"its rollout did not finish within {timeout_s} s" if "context deadline exceeded" in detail
              else "another field manager owns fields the chart sets (something other than helm changed the "
                   "release's objects: `kubectl get -o yaml --show-managed-fields` names it)" if "conflict" in detail
              else "Helm refused it")
    return ServingError(
        f"upgrade of Helm release {namespace}/{release} to archive version {version} failed: {reason}; Helm rolled "
        f"it back (rollback_on_failure), {state}. Helm said: {detail}. See why the new pods did not become ready: "
        f"`kubectl -n {namespace} describe pods -l app.kubernetes.io/instance={release}` and their fetch-model log")


if __name__ == "__main__":  # the child upgrade_release starts: argv[1] the request, argv[2] where the answer goes
    request, answer = json.loads(sys.argv[1]), Path(sys.argv[2])
    try:
        answer.write_text(json.dumps(asdict(_upgrade(**request))))
    except ServingError as exc:
        answer.write_text(json.dumps({"error": str(exc)}))
