"""The images the test cluster runs besides segflow's own: the pause sandbox, CoreDNS, MinIO, Prometheus, its operator,
the KubeRay operator.

No registry is reachable, so each is made here the way `make images` makes segflow's (tools/imagebuild):
a static binary built from its pinned source (tests/support/gobuild.py; pause.c with gcc) on an
empty base, tagged by a digest of what it is built from, cached under ~/.cache/segflow/images. Each Containerfile is in
tests/support/containerfiles/. Names are under localhost/segflow-test/: test infrastructure,
never pushed anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from imagebuild import Image, ImageSpec, build, cache_dir
from support import gobuild

CONTAINERFILES = Path(__file__).parent / "containerfiles"
REPOSITORY = "localhost/segflow-test"


class ImagesUnavailable(RuntimeError):
    """An image's binary could not be built here; the message says why."""


@dataclass(frozen=True)
class NodeImages:
    """What the node itself runs: every pod's sandbox and the cluster DNS."""

    pause: Image
    coredns: Image


def node_images() -> NodeImages:
    return NodeImages(pause=_static("pause", _pause_version(), {"pause": _compile_pause()}),
                      coredns=_static("coredns", gobuild.COREDNS_VERSION, _binaries(gobuild.coredns())))


def minio() -> Image:
    return _static("minio", "0.0.0", _binaries(gobuild.minio()))


def prometheus() -> Image:
    """The Prometheus server prometheus-operator's StatefulSet runs (the Prometheus resource's spec.image)."""
    return _static("prometheus", gobuild.PROMETHEUS_VERSION, _binaries(gobuild.prometheus()))


def prometheus_operator() -> tuple[Image, Image]:
    """The operator, and the config reloader it puts beside each Prometheus."""
    built = gobuild.prometheus_operator()
    binaries = _binaries(built)
    version = gobuild.PROMETHEUS_OPERATOR_VERSION.removeprefix("v")
    return (_static("prometheus-operator", version, {"operator": binaries["operator"]}),
            _static("prometheus-config-reloader", version,
                    {"prometheus-config-reloader": binaries["prometheus-config-reloader"]}))


def kuberay_operator() -> Image:
    """The KubeRay operator, which turns RayJobs into Ray clusters of pods and submits their jobs."""
    return _static("kuberay-operator", gobuild.KUBERAY_VERSION, _binaries(gobuild.kuberay()))


def _static(name: str, version: str, files: dict[str, Path]) -> Image:
    return build(ImageSpec(name=name, repository=f"{REPOSITORY}/{name}", version=version.removeprefix("v"),
                           containerfile=CONTAINERFILES / f"{name}.Containerfile", context=_context(name, files),
                           bases={}))


def _binaries(built: gobuild.Built) -> dict[str, Path]:
    if not built.ok:
        raise ImagesUnavailable(f"{built.name} could not be built: {built.error.splitlines()[0]}")
    return built.binaries


def _context(name: str, files: dict[str, Path]) -> Path:
    """A build context holding exactly FILES (hard links into the Go build cache where possible: no copies)."""
    folder = cache_dir() / "contexts" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for target, source in files.items():
        try:
            os.link(source, folder / target)
        except OSError:
            shutil.copy2(source, folder / target)
    return folder


def _pause_source() -> Path:
    source = (gobuild.CACHE / "go" / "pkg" / "mod" / f"k8s.io/kubernetes@{gobuild.KUBE_VERSION}" / "build" / "pause")
    if not (source / "linux" / "pause.c").is_file():
        raise ImagesUnavailable(f"no pause.c under {source}: the Kubernetes module source comes with "
                                "`PYTHONPATH=tests python -m support.gobuild`")
    return source


def _pause_version() -> str:
    return re.search(r"^TAG \?= (\S+)$", (_pause_source() / "Makefile").read_text(), re.M).group(1)


def _compile_pause() -> Path:
    """pause.c as Kubernetes' build/pause/Makefile compiles it (-Os -static), into the Go binaries' cache."""
    output = gobuild.CACHE / "go-bin" / f"pause-{_pause_version()}" / "pause"
    if not output.is_file():
        if shutil.which("gcc") is None:
            raise ImagesUnavailable("no gcc to compile Kubernetes' pause.c: apt-get install -y gcc libc6-dev")
        output.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["gcc", "-Os", "-Wall", "-Werror", "-static",
                                 f"-DVERSION=v{_pause_version()}-segflow", "-o", str(output),
                                 str(_pause_source() / "linux" / "pause.c")], capture_output=True, text=True)
        if result.returncode != 0:
            raise ImagesUnavailable(f"gcc could not compile pause.c: {result.stderr.strip()}")
    return output
