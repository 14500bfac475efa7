"""KubeRay's own CRDs (from the ray-operator module gobuild builds the operator from) on a real kube-apiserver.

The RayJob in k8s/ must pass the schema of the operator that will run it: the CRDs shipped in
github.com/ray-project/kuberay/ray-operator at gobuild.KUBERAY_VERSION, installed on a real API
server, accept k8s/examples/rayjob-train.yaml as written and refuse a RayJob the schema rules out, naming
the field. The server is this module's own (etcd and kube-apiserver, no kubelet): the session's
kube_api holds the CRDs of ../shared/schemas (KubeRay 1.7) for the other tests, and installing
another release's over them would change what those tests check.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from support import gobuild
from support.kube import K8S, KubeUnavailable, kube_api, not_as_written
from support.real import unavailable


@pytest.fixture(scope="module")
def kuberay_api(tmp_path_factory):
    built = gobuild.kuberay()
    if not built.ok:
        unavailable(f"KubeRay's module not built here: {built.error.splitlines()[0]}")
    try:
        with kube_api(tmp_path_factory.mktemp("kuberay-api")) as api:
            api.install_crds(gobuild.kuberay_crds())
            api.kubectl("apply", "-f", str(K8S / "namespace.yaml"))
            yield api
    except KubeUnavailable as exc:
        unavailable(f"no kube-apiserver: {exc}")


def _rayjob() -> dict:
    return copy.deepcopy(next(d for d in yaml.safe_load_all((K8S / "examples" / "rayjob-train.yaml").read_text()) if d))


def _dry_run_create(api, job: dict):
    """`kubectl create --dry-run=server` with strict field validation: the server validates, admits, stores nothing."""
    return api.kubectl("create", "--dry-run=server", "--validate=strict", "-o", "yaml", "-f", "-",
                       stdin=yaml.safe_dump(job), check=False)


def test_the_kuberay_crds_serve_rayclusters_rayjobs_and_rayservices_at_v1(kuberay_api):
    resources = kuberay_api.kubectl("api-resources", "--api-group=ray.io", "-o", "name").stdout.split()
    assert set(resources) == {"rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"}
    versions = kuberay_api.kubectl("api-versions").stdout.split()
    assert "ray.io/v1" in versions


def test_the_k8s_rayjob_is_accepted_as_written(kuberay_api):
    written = _rayjob()
    accepted = _dry_run_create(kuberay_api, written)
    assert accepted.returncode == 0, accepted.stderr
    # Nothing pruned: a field this release's schema does not know would be dropped silently.
    assert not_as_written(written["spec"], yaml.safe_load(accepted.stdout)["spec"]) == []
    example = str(K8S / "examples" / "rayjob-train.yaml")
    applied = kuberay_api.kubectl("apply", "--server-side", "--dry-run=server", "-f", example,
                                  check=False)
    assert applied.returncode == 0, applied.stderr


def _without_head_group(job: dict) -> None:
    del job["spec"]["rayClusterSpec"]["headGroupSpec"]


def _backoff_limit_as_text(job: dict) -> None:
    job["spec"]["backoffLimit"] = "two"


@pytest.mark.parametrize(("break_it", "message"), [
    (_without_head_group, "spec.rayClusterSpec.headGroupSpec: Required value"),
    (_backoff_limit_as_text, "spec.backoffLimit: Invalid value: \"string\": spec.backoffLimit in body must be of type "
                             "integer"),
])
def test_a_rayjob_the_schema_rules_out_is_refused_naming_the_field(kuberay_api, break_it, message):
    job = _rayjob()
    break_it(job)
    refused = _dry_run_create(kuberay_api, job)
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
