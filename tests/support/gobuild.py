"""Build the servers the tests run for real (MinIO, etcd, kube-apiserver) from their Go modules.

No package registry ships these binaries; the Go module proxy ships their source. Each build is
pinned (MinIO by its module version, etcd and kube-apiserver by tools/kube-apiserver/go.mod and
go.sum) and cached outside the repository, under ~/.cache/segflow (SEGFLOW_GO_CACHE moves it):
the Go module and build caches, and the binaries in a folder named by what pins them, so a second
run on the same machine reuses them and a version bump builds again. A failed build is recorded
next to where the binaries would be, so a test session reports it instead of failing the same way
twice; `make test` runs this module first, which tries again.

    python tests/support/gobuild.py     # build (or find) everything, print versions and times
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SEGFLOW_GO_CACHE", Path.home() / ".cache" / "segflow"))
KUBE_TOOLS = REPO / "tools" / "kube-apiserver"
# The last commit of github.com/minio/minio (2026-02-12; the repository is archived since, and
# publishes source only). Its tags (RELEASE.*) are not semver, so Go names it by pseudo-version.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
KUBE_VERSION = "v1.36.3"  # k8s.io/kubernetes in tools/kube-apiserver/go.mod
ETCD_VERSION = "v3.6.8"  # go.etcd.io/etcd/server/v3 there: the etcd that Kubernetes 1.36.3 pins
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


def go() -> str | None:
    found = shutil.which("go")
    if found is None and Path("/usr/local/go/bin/go").is_file():
        found = "/usr/local/go/bin/go"
    return found


def minio(retry: bool = False) -> Built:
    """The MinIO server, `go install`ed from its module at MINIO_VERSION."""
    folder = CACHE / "go-bin" / f"minio-{MINIO_VERSION}"
    commands = [["install", "-trimpath", f"github.com/minio/minio@{MINIO_VERSION}"]]
    return _build("minio", MINIO_VERSION, folder, {"minio": folder / "minio"}, commands, REPO, {"GOBIN": str(folder)},
                  retry)


def kube(retry: bool = False) -> Built:
    """kube-apiserver and etcd, built in the build-only module tools/kube-apiserver."""
    pins = hashlib.sha256((KUBE_TOOLS / "go.mod").read_bytes() + (KUBE_TOOLS / "go.sum").read_bytes()).hexdigest()
    folder = CACHE / "go-bin" / f"kube-{KUBE_VERSION}-{pins[:12]}"
    binaries = {"kube-apiserver": folder / "kube-apiserver", "etcd": folder / "etcd"}
    version = f"kube-apiserver {KUBE_VERSION}, etcd {ETCD_VERSION}"
    # kube-apiserver reports the version it is told at link time, as Kubernetes' own build does.
    stamp = " ".join(f"-X k8s.io/{module}/version.{key}={value}" for module in ("component-base", "client-go/pkg")
                     for key, value in (("gitVersion", KUBE_VERSION), ("gitMajor", "1"),
                                        ("gitMinor", KUBE_VERSION.split(".")[1]), ("gitTreeState", "clean")))
    commands = [["build", "-trimpath", f"-ldflags={stamp}", "-o", str(binaries["kube-apiserver"]),
                 "k8s.io/kubernetes/cmd/kube-apiserver"],
                ["build", "-trimpath", "-o", str(binaries["etcd"]), "go.etcd.io/etcd/server/v3"]]
    return _build("kube", version, folder, binaries, commands, KUBE_TOOLS, {}, retry)


def _build(name: str, version: str, folder: Path, binaries: dict[str, Path], commands: list[list[str]], cwd: Path,
           env: dict[str, str], retry: bool) -> Built:
    if all(path.is_file() for path in binaries.values()):
        return Built(name, version, binaries)
    failure = folder.with_name(folder.name + ".failed")
    if failure.is_file() and not retry:
        return Built(name, version, {}, failure.read_text())
    toolchain = go()
    if toolchain is None:
        return Built(name, version, {}, "no `go` toolchain on PATH (Go >= 1.26 builds them: https://go.dev/dl)")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[gobuild] building {name} ({version}) into {folder}; the first build takes minutes", file=sys.stderr,
          flush=True)
    started, cpu = time.monotonic(), _children_cpu()
    error = ""
    for command in commands:
        error = _go(toolchain, command, cwd, env)
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


def _go(toolchain: str, command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run one go command; the error to report, or "" when it succeeded."""
    try:
        result = subprocess.run([toolchain, *command], cwd=cwd, env=go_env(env), capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"`go {' '.join(command)}` did not finish within {BUILD_TIMEOUT_S} s"
    if result.returncode != 0:
        last = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "no output")
        return f"`go {' '.join(command)}` (in {cwd}) exited {result.returncode}: {last}\n{result.stderr[-3000:]}"
    return ""


def go_env(extra: dict[str, str]) -> dict[str, str]:
    """Module and build caches under CACHE; no cgo, no toolchain download, no VCS stamping."""
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
    for build in (minio, kube):
        built = build(retry=True)
        if built.ok:
            how = f"built in {built.seconds:.0f} s ({built.cpu_seconds:.0f} CPU-s)" if built.seconds else "cached"
            print(f"[gobuild] {built.name}: {built.version}, {how}: {' '.join(map(str, built.binaries.values()))}")
        else:
            print(f"[gobuild] {built.name}: NOT BUILT ({built.version}); the tests that need it use a fallback or "
                  f"skip.\n{built.error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
