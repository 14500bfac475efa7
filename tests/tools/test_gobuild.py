"""The Go builds the tests run for real (tests/support/gobuild.py) are what their pins say.

Each test skips, saying why, where its build is unavailable here (no Go, or a recorded failure);
`PYTHONPATH=tests python -m support.gobuild` builds them all first.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import threading

import pytest
import yaml

from support import gobuild, gotoolchain
from support.real import unavailable

# The directives of tools/coredns/main.go as `coredns -plugins` names them ("prometheus" is plugin/metrics).
CLUSTER_DNS_PLUGINS = {"cache", "errors", "forward", "health", "kubernetes", "loadbalance", "log", "loop", "prometheus",
                       "ready", "reload"}
# Registered by packages those import (forward: dnstap; kubernetes: transfer...), yet not directives, so no
# Corefile can name them.
LINKED_ALONG = {"debug", "dnstap", "metadata", "transfer"}


@pytest.mark.parametrize(("module", "path", "version"), [
    ("kubernetes", "k8s.io/kubernetes", gobuild.KUBE_VERSION),
    ("kubernetes", "go.etcd.io/etcd/server/v3", gobuild.ETCD_VERSION),
    ("coredns", "github.com/coredns/coredns", gobuild.COREDNS_VERSION),
    ("prometheus-operator", gobuild.PROMETHEUS_OPERATOR, gobuild.PROMETHEUS_OPERATOR_VERSION),
    ("kuberay", gobuild.KUBERAY, gobuild.KUBERAY_VERSION),
])
def test_versions_gobuild_reports_are_the_ones_go_mod_pins(module, path, version):
    """gobuild labels (and stamps) the binaries with its constants: a go.mod bump alone would mislabel them."""
    go_mod = (gobuild.TOOLS / module / "go.mod").read_text()
    pinned = rf"^\s*(?:require )?{re.escape(path)} {re.escape(version)}\b"
    assert re.search(pinned, go_mod, re.MULTILINE), f"tools/{module}/go.mod does not pin {path} {version}"


def test_kubernetes_staging_modules_are_pinned_at_the_same_release():
    """k8s.io/kubernetes v1.X.Y builds against its staging modules at v0.X.Y; the replace directives say which."""
    go_mod = (gobuild.TOOLS / "kubernetes" / "go.mod").read_text()
    pinned = set(re.findall(r"^\s*k8s\.io/\S+ => k8s\.io/\S+ (\S+)$", go_mod, re.MULTILINE))
    assert pinned == {gobuild.KUBE_VERSION.replace("v1.", "v0.", 1)}


def _built(build) -> gobuild.Built:
    built = build()
    if not built.ok:
        unavailable(f"{built.name} not built here: {built.error.splitlines()[0]}")
    return built


def _run(binary, *args: str) -> str:
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{binary} {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.parametrize("name", gobuild.KUBE_COMMANDS)
def test_kubernetes_binaries_report_the_pinned_release(name):
    """Each is stamped at link time, as Kubernetes' own build does; unstamped, they say v0.0.0-master."""
    built = _built(gobuild.kube)
    assert f"Kubernetes {gobuild.KUBE_VERSION}" in _run(built.binaries[name], "--version")


def test_etcd_is_the_release_kubernetes_pins():
    built = _built(gobuild.kube)
    assert f"etcd Version: {gobuild.ETCD_VERSION.removeprefix('v')}" in _run(built.binaries["etcd"], "--version")


def test_coredns_links_the_cluster_dns_plugins_and_no_others():
    """A Corefile naming a plugin left out fails at start; the ~50 others would only cost build time."""
    built = _built(gobuild.coredns)
    assert f"CoreDNS-{gobuild.COREDNS_VERSION.removeprefix('v')}" in _run(built.binaries["coredns"], "-version")
    assert set(_run(built.binaries["coredns"], "-plugins").split()) == CLUSTER_DNS_PLUGINS | LINKED_ALONG


@pytest.mark.parametrize("name", ["operator", "prometheus-config-reloader"])
def test_prometheus_operator_binaries_report_the_pinned_release(name):
    """The operator names its config-reloader sidecar image by its own version; unstamped, that tag is a bare `v`."""
    built = _built(gobuild.prometheus_operator)
    assert f"version {gobuild.PROMETHEUS_OPERATOR_VERSION.removeprefix('v')}" in _run(built.binaries[name], "--version")


def test_prometheus_operator_crds_are_the_monitoring_ones_a_chart_needs():
    _built(gobuild.prometheus_operator)
    # BaseLoader: their schemas hold an enum value `=`, which yaml.safe_load (YAML 1.1) takes for a tag it refuses.
    crds = [yaml.load(path.read_text(), Loader=yaml.BaseLoader) for path in gobuild.prometheus_operator_crds()]
    assert {crd["kind"] for crd in crds} == {"CustomResourceDefinition"}
    assert {"servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com",
            "podmonitors.monitoring.coreos.com", "prometheuses.monitoring.coreos.com"} <= \
        {crd["metadata"]["name"] for crd in crds}


def test_kuberay_operator_is_the_pinned_module():
    """The build info the Go linker puts in the binary: built as the main module, ray-operator at the pinned release."""
    built = _built(gobuild.kuberay)
    go = gobuild.toolchain().go
    info = subprocess.run([go, "version", "-m", str(built.binaries["kuberay-operator"])], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    assert re.search(rf"^\s*path\s+{re.escape(gobuild.KUBERAY)}$", info, re.MULTILINE), info
    assert re.search(rf"^\s*mod\s+{re.escape(gobuild.KUBERAY)}\s+{re.escape(gobuild.KUBERAY_VERSION)}\s", info,
                     re.MULTILINE), info


def test_kuberay_operator_reports_the_pinned_release_to_the_api_server(tmp_path):
    """KubeRay has no version flag: its release (a constant in its source) is in the user agent it sends.

    A loopback HTTP listener stands where the API server would be and records the first request;
    404s keep the operator retrying until it is stopped.
    """
    built = _built(gobuild.kuberay)
    agents: list[str] = []
    seen = threading.Event()

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            agents.append(self.headers.get("User-Agent", ""))
            seen.set()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}')

        do_POST = do_PUT = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "probe",
        "clusters": [{"name": "probe", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "probe", "user": {}}],
        "contexts": [{"name": "probe", "context": {"cluster": "probe", "user": "probe"}}]}))
    # No leader election (it needs an in-cluster namespace), no metrics or probe listeners (their ports may be taken).
    operator = subprocess.Popen([str(built.binaries["kuberay-operator"]), "-enable-leader-election=false",
                                 "-metrics-addr=0", "-health-probe-bind-address=0"],
                                env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert seen.wait(60), "the operator sent no request within 60 s"
    finally:
        operator.kill()
        log = operator.communicate(timeout=30)[0]
        server.shutdown()
        server.server_close()
    assert agents[0] == f"kuberay-operator/{gobuild.KUBERAY_VERSION}", log[-2000:]


def test_kuberay_crds_are_the_ray_io_kinds_served_at_v1():
    _built(gobuild.kuberay)
    crds = [yaml.load(path.read_text(), Loader=yaml.BaseLoader) for path in gobuild.kuberay_crds()]
    assert {crd["kind"] for crd in crds} == {"CustomResourceDefinition"}
    assert {crd["spec"]["group"] for crd in crds} == {"ray.io"}
    assert sorted(crd["spec"]["names"]["kind"] for crd in crds) == ["RayCluster", "RayJob", "RayService"]
    for crd in crds:
        served = {version["name"] for version in crd["spec"]["versions"] if version["served"] == "true"}
        assert "v1" in served, crd["metadata"]["name"]


@pytest.mark.parametrize("module", sorted(path.parent.name for path in gobuild.TOOLS.glob("*/go.mod")))
def test_build_module_pins_are_complete_and_tidy(module):
    """go.mod and go.sum need no change to build (`go build` runs -mod=readonly): nothing missing, nothing stale."""
    try:
        go = gobuild.toolchain().go
    except gotoolchain.NoToolchain as exc:
        unavailable(str(exc))
    result = subprocess.run([go, "mod", "tidy", "-diff"], cwd=gobuild.TOOLS / module, env=gobuild.go_env({}),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"tools/{module} is not tidy (`go mod tidy` there):\n{result.stdout}{result.stderr}"
