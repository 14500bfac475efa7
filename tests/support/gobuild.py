"""Build the programs the tests run for real (MinIO, Kubernetes, etcd, CoreDNS, prometheus-operator, KubeRay) from Go.

No package registry ships these binaries; the Go module proxy ships their source. Each build is
pinned (MinIO by its module version, the others by a build-only module under tools/: its go.mod,
go.sum and any main package) and cached outside the repository, under ~/.cache/segflow
(SEGFLOW_GO_CACHE moves it): the Go module and build caches, and the binaries in a folder named by
what pins them, so a second run on the same machine reuses them and a version bump builds again.
A failed build is recorded next to where the binaries would be, so a test session reports it
instead of failing the same way twice; `make test` runs this module first, which tries again.
Where no Go new enough is installed, gotoolchain.py fetches the pinned release from the proxy.

    PYTHONPATH=tests python -m support.gobuild   # build (or find) everything, print versions and times
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from support import gotoolchain

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
CACHE = Path(os.environ.get("SEGFLOW_GO_CACHE", Path.home() / ".cache" / "segflow"))
# The last commit of github.com/minio/minio (2026-02-12; the repository is archived since, and
# publishes source only). Its tags (RELEASE.*) are not semver, so Go names it by pseudo-version.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
KUBE_VERSION = "v1.36.3"  # k8s.io/kubernetes in tools/kubernetes/go.mod
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
ETCD_VERSION = "v3.6.8"  # go.etcd.io/etcd/server/v3 there: the etcd that Kubernetes 1.36.3 pins
COREDNS_VERSION = "v1.15.0"  # github.com/coredns/coredns in tools/coredns/go.mod
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"  # in tools/prometheus-operator/go.mod: the newest the proxy serves
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
KUBERAY_VERSION = "v1.5.0"  # in tools/kuberay/go.mod: the newest the proxy serves
KUBERAY = "github.com/ray-project/kuberay/ray-operator"
HELM_VERSION = "v4.3.2"  # helm.sh/helm/v4: the helm command docs/deploy.md runs
# Prometheus 3.5.0, the newest release prometheus-operator v0.85.0 supports (its Go module calls it v0.305.0).
PROMETHEUS_VERSION = "v3.5.0"
# No symbol table or DWARF, as in Kubernetes' release builds: a third smaller, links in half the time;
# panics still print their stack traces.
STRIP = "-s -w"
BUILD_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Built:
    """Binaries of one pinned build, or why there are none."""

    name: str
    version: str
    binaries: dict[str, Path]
    error: str = ""
    seconds: float = 0.0  # build time in this process (wall clock); 0 when the cache had them
    cpu_seconds: float = 0.0  # CPU time the go commands used (user + system, all cores)

    @property
    def ok(self) -> bool:
        return not self.error


def toolchain() -> gotoolchain.Toolchain:
    """The Go the builds use, new enough for every tools/*/go.mod; gotoolchain.NoToolchain says why there is none."""
    return gotoolchain.find(gotoolchain.required_version(TOOLS.glob("*/go.mod")), CACHE / "go-toolchain")


def minio(retry: bool = False) -> Built:
    """The MinIO server, `go install`ed from its module at MINIO_VERSION."""
    folder = CACHE / "go-bin" / f"minio-{MINIO_VERSION}"
    commands = [["install", "-trimpath", f"github.com/minio/minio@{MINIO_VERSION}"]]
    return _build("minio", MINIO_VERSION, folder, {"minio": folder / "minio"}, commands, REPO, {"GOBIN": str(folder)},
                  retry)


def helm(retry: bool = False) -> Built:
    """The helm command, `go install`ed from its module at HELM_VERSION, reporting that version as its release does."""
    folder = CACHE / "go-bin" / f"helm-{HELM_VERSION}"
    stamp = f"{STRIP} -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}"
    commands = [["install", "-trimpath", f"-ldflags={stamp}", f"helm.sh/helm/v4/cmd/helm@{HELM_VERSION}"]]
    return _build("helm", HELM_VERSION, folder, {"helm": folder / "helm"}, commands, REPO, {"GOBIN": str(folder)},
                  retry)


def kube(retry: bool = False) -> Built:
    """kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and etcd, from tools/kubernetes."""
    module, ldflags = TOOLS / "kubernetes", f"{STRIP} {_kube_stamp()}"
    folder = _pinned_folder("kubernetes", KUBE_VERSION, module, ldflags)
    binaries = {name: folder / name for name in (*KUBE_COMMANDS, "etcd")}
    # One go build for all five, so the packages they share compile once.
    commands = [["build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{folder}/",
                 *(f"k8s.io/kubernetes/cmd/{name}" for name in KUBE_COMMANDS)],
                ["build", "-trimpath", "-o", str(binaries["etcd"]), "go.etcd.io/etcd/server/v3"]]
    return _build("kubernetes", f"Kubernetes {KUBE_VERSION}, etcd {ETCD_VERSION}", folder, binaries, commands, module,
                  {}, retry)


def _kube_stamp() -> str:
    """The version each Kubernetes binary reports, told at link time as Kubernetes' own build does (else v0.0.0)."""
    values = {"gitVersion": KUBE_VERSION, "gitMajor": "1", "gitMinor": KUBE_VERSION.split(".")[1],
              "gitTreeState": "clean"}
    return " ".join(f"-X k8s.io/{package}/version.{key}={value}"
                    for package in ("component-base", "client-go/pkg") for key, value in values.items())


def coredns(retry: bool = False) -> Built:
    """CoreDNS with the plugins a cluster DNS Corefile uses (tools/coredns/main.go lists them)."""
    module = TOOLS / "coredns"
    folder = _pinned_folder("coredns", COREDNS_VERSION, module, STRIP)
    binaries = {"coredns": folder / "coredns"}
    commands = [["build", "-trimpath", f"-ldflags={STRIP}", "-o", str(binaries["coredns"]), "."]]
    return _build("coredns", COREDNS_VERSION, folder, binaries, commands, module, {}, retry)


def prometheus_operator(retry: bool = False) -> Built:
    """prometheus-operator (`operator`) and prometheus-config-reloader, from tools/prometheus-operator."""
    module = TOOLS / "prometheus-operator"
    # Both print this version, and the operator names its sidecar image by it (.../prometheus-config-reloader:v0.85.0).
    ldflags = f"{STRIP} -X github.com/prometheus/common/version.Version={PROMETHEUS_OPERATOR_VERSION.removeprefix('v')}"
    folder = _pinned_folder("prometheus-operator", PROMETHEUS_OPERATOR_VERSION, module, ldflags)
    binaries = {name: folder / name for name in ("operator", "prometheus-config-reloader")}
    commands = [["build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{folder}/",
                 *(f"{PROMETHEUS_OPERATOR}/cmd/{name}" for name in binaries)]]
    return _build("prometheus-operator", PROMETHEUS_OPERATOR_VERSION, folder, binaries, commands, module, {}, retry)


def prometheus(retry: bool = False) -> Built:
    """The Prometheus server prometheus-operator runs, from tools/prometheus, stamped with its release.

    Debian's package cannot stand in: it is built without Kubernetes service discovery, which every
    scrape job the operator generates uses, and 2.42 is older than the operator supports (2.45).
    """
    module = TOOLS / "prometheus"
    ldflags = f"{STRIP} -X github.com/prometheus/common/version.Version={PROMETHEUS_VERSION.removeprefix('v')}"
    folder = _pinned_folder("prometheus", PROMETHEUS_VERSION, module, ldflags)
    binaries = {"prometheus": folder / "prometheus"}
    commands = [["build", "-trimpath", f"-ldflags={ldflags}", "-o", str(binaries["prometheus"]),
                 "github.com/prometheus/prometheus/cmd/prometheus"]]
    return _build("prometheus", PROMETHEUS_VERSION, folder, binaries, commands, module, {}, retry)


def prometheus_operator_crds() -> list[Path]:
    """The CRDs prometheus-operator ships (Prometheus, ServiceMonitor, PrometheusRule...), for a test to apply.

    They come from its module source in the Go module cache, which prometheus_operator() fills.
    """
    folder = CACHE / "go" / "pkg" / "mod" / f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}" / "example" / \
        "prometheus-operator-crd"
    crds = sorted(folder.glob("monitoring.coreos.com_*.yaml"))
    if not crds:
        raise FileNotFoundError(f"no CRDs in {folder}: prometheus-operator's module source is not in the Go module "
                                f"cache; `PYTHONPATH=tests python -m support.gobuild` downloads it")
    return crds


def kuberay(retry: bool = False) -> Built:
    """The KubeRay operator (RayCluster, RayJob and RayService controllers), from tools/kuberay.

    Its release is a constant in its source (controllers/ray/utils.KUBERAY_VERSION, in the user
    agent and the usage-stats tags it gives Ray pods), not a link-time variable: upstream's release
    build stamps nothing, so neither does this one. The binary has no version flag: the tests read
    the release from the user agent it sends and the module from its build info (`go version -m`).
    """
    module = TOOLS / "kuberay"
    folder = _pinned_folder("kuberay", KUBERAY_VERSION, module, STRIP)
    binaries = {"kuberay-operator": folder / "kuberay-operator"}
    commands = [["build", "-trimpath", f"-ldflags={STRIP}", "-o", str(binaries["kuberay-operator"]), KUBERAY]]
    return _build("kuberay", KUBERAY_VERSION, folder, binaries, commands, module, {}, retry)


def kuberay_crds() -> list[Path]:
    """The CRDs KubeRay ships (RayCluster, RayJob, RayService), for a test to apply.

    They come from its module source in the Go module cache, which kuberay() fills.
    """
    folder = CACHE / "go" / "pkg" / "mod" / f"{KUBERAY}@{KUBERAY_VERSION}" / "config" / "crd" / "bases"
    crds = sorted(folder.glob("ray.io_*.yaml"))
    if not crds:
        raise FileNotFoundError(f"no CRDs in {folder}: KubeRay's module source is not in the Go module cache; "
                                f"`PYTHONPATH=tests python -m support.gobuild` downloads it")
    return crds


def _pinned_folder(name: str, version: str, module: Path, ldflags: str) -> Path:
    """Where a build-only module's binaries go: named by a hash of what makes them (go.mod, go.sum, *.go, ldflags)."""
    pins = hashlib.sha256(ldflags.encode())
    for path in sorted(p for p in module.iterdir() if p.is_file()):
        pins.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return CACHE / "go-bin" / f"{name}-{version}-{pins.hexdigest()[:12]}"


def _build(name: str, version: str, folder: Path, binaries: dict[str, Path], commands: list[list[str]], cwd: Path,
           env: dict[str, str], retry: bool) -> Built:
    if all(path.is_file() for path in binaries.values()):
        return Built(name, version, binaries)
    failure = folder.with_name(folder.name + ".failed")
    if failure.is_file() and not retry:
        return Built(name, version, {}, failure.read_text())
    try:
        go = toolchain().go
    except gotoolchain.NoToolchain as exc:
        return Built(name, version, {}, str(exc))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[gobuild] building {name} ({version}) into {folder}; the first build takes minutes", file=sys.stderr,
          flush=True)
    started, cpu = time.monotonic(), _children_cpu()
    error = ""
    for command in commands:
        error = _go(go, command, cwd, env)
        if error:
            break
    seconds, cpu = time.monotonic() - started, _children_cpu() - cpu
    if error:
        failure.write_text(error)
        return Built(name, version, {}, error, seconds, cpu)
    failure.unlink(missing_ok=True)
    return Built(name, version, binaries, "", seconds, cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _go(go: str, command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run one go command; the error to report, or "" when it succeeded."""
    try:
        result = subprocess.run([go, *command], cwd=cwd, env=go_env(env), capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"`go {' '.join(command)}` did not finish within {BUILD_TIMEOUT_S} s"
    if result.returncode != 0:
        last = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "no output")
        return f"`go {' '.join(command)}` (in {cwd}) exited {result.returncode}: {last}\n{result.stderr[-3000:]}"
    return ""


def go_env(extra: dict[str, str]) -> dict[str, str]:
    """Module and build caches under CACHE; no cgo, no toolchain switch, no VCS stamping."""
    return {
        **os.environ,
        "GOPATH": str(CACHE / "go"),
        "GOMODCACHE": str(CACHE / "go" / "pkg" / "mod"),
        "GOCACHE": str(CACHE / "go-build"),
        "CGO_ENABLED": "0",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-buildvcs=false",
        **extra,
    }


def main() -> int:
    try:
        found = toolchain()
        fetched = f", fetched from the Go module proxy in {found.fetch_seconds:.0f} s" if found.fetch_seconds else ""
        print(f"[gobuild] go: {found.version} at {found.go}{fetched}")
    except gotoolchain.NoToolchain as exc:
        print(f"[gobuild] no Go toolchain: {exc}", file=sys.stderr)
    for build in (minio, kube, coredns, prometheus_operator, prometheus, kuberay, helm):
        _report(build(retry=True))
    return 0


def _report(built: Built) -> None:
    if not built.ok:
        print(f"[gobuild] {built.name}: NOT BUILT ({built.version}); the tests that need it use a fallback or skip.\n"
              f"{built.error}", file=sys.stderr)
        return
    how = f"built in {built.seconds:.0f} s ({built.cpu_seconds:.0f} CPU-s)" if built.seconds else "cached"
    sizes = ", ".join(f"{path} ({path.stat().st_size / 2**20:.0f} MiB)" for path in built.binaries.values())
    print(f"[gobuild] {built.name}: {built.version}, {how}: {sizes}")


if __name__ == "__main__":
    sys.exit(main())
