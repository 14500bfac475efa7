"""build(spec) -> Image: an image built with podman from Debian bases, saved as a docker-archive, cached by tag.

Everything lives under the image cache (`cache_dir()`): bases/ (root filesystem tars), podman/
(podman's storage and configuration), archives/NAME/ (TAG.tar and its record TAG.json) and
logs/. An archive whose tag is already there is the build's result, without starting podman;
a new tag's build removes the older tags' archives (first: they are stale, and a build of several
GB needs the room) and, once it succeeded, their podman images and the layers nothing else uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imagebuild.context import inputs_tag
from imagebuild.debian import ensure_base
from imagebuild.errors import ImageBuildError
from imagebuild.podman import Podman
from imagebuild.spec import ImageSpec

# Mounted into every build, never copied into an image: the host's CA bundle (package traffic may
# pass a TLS proxy that only it trusts) and pip's cache (wheels are not downloaded twice, and no
# cache ends up in a layer). Builds install as root, whose cache this is.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_PROGRESS = re.compile(r"^(\[\d+/\d+\] )?(STEP|COMMIT) ")  # "[2/2] STEP 3/9: ..." in a multi-stage build


@dataclass(frozen=True)
class Image:
    """A built image: its full reference, the docker-archive holding it, and its size."""

    reference: str
    archive: Path
    size: int  # bytes, uncompressed, as `podman image inspect` reports it
    built: bool  # False when the cache already had this tag
    seconds: float  # this call's wall time


def cache_dir() -> Path:
    """~/.cache/segflow/images, or SEGFLOW_IMAGE_CACHE."""
    return Path(os.environ.get("SEGFLOW_IMAGE_CACHE", Path.home() / ".cache" / "segflow" / "images"))


def pip_cache() -> Path:
    return Path(os.environ.get("PIP_CACHE_DIR", Path.home() / ".cache" / "pip"))


def build(spec: ImageSpec, tag: str | None = None, *, cache: Path | None = None) -> Image:
    """Build `spec` as REPOSITORY:TAG (TAG derived from its inputs unless given), or find it in the cache."""
    started = time.monotonic()
    cache = cache or cache_dir()
    tag = tag or inputs_tag([spec], spec.version)
    reference = f"{spec.repository}:{tag}"
    archive = cache / "archives" / spec.name / f"{tag}.tar"
    record = archive.with_suffix(".json")
    if archive.is_file() and record.is_file():
        return Image(reference, archive, json.loads(record.read_text())["size"], False, time.monotonic() - started)
    podman = Podman(cache / "podman")
    _remove_other_archives(archive)  # stale from now on; their space is needed while this one builds
    arguments = {arg: ensure_base(base, podman, cache) if base else "scratch" for arg, base in spec.bases.items()}
    print(f"building {reference} (log: {cache / 'logs' / f'{spec.name}-{tag}.log'})", flush=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f"{archive.stem}.{os.getpid()}.partial")  # another build may be saving too
    try:
        podman.run("build", *_build_options(spec, arguments | dict(spec.build_args)), "--tag", reference,
                   str(spec.context), log=cache / "logs" / f"{spec.name}-{tag}.log",
                   echo=lambda line: bool(_PROGRESS.match(line)))
        size = podman.size(reference)
        podman.run("save", "--format", "docker-archive", "--output", str(partial), reference)
    except ImageBuildError as exc:
        partial.unlink(missing_ok=True)
        raise _with_disk_hint(exc, cache) from None
    os.replace(partial, archive)
    image = Image(reference, archive, size, True, time.monotonic() - started)
    record.write_text(json.dumps({**asdict(image), "archive": str(archive)}, indent=2) + "\n")
    _forget_older(spec.repository, reference, podman)
    return image


def _build_options(spec: ImageSpec, arguments: dict[str, str]) -> list[str]:
    volumes = [f"{pip_cache()}:/root/.cache/pip"]
    if CA_BUNDLE.is_file():
        volumes.append(f"{CA_BUNDLE}:{CA_BUNDLE}:ro")
    pip_cache().mkdir(parents=True, exist_ok=True)
    return ["--pull=never", "--network=host", "--layers", "--file", str(spec.containerfile),
            *(f"--volume={volume}" for volume in volumes),
            *(f"--build-arg={name}={value}" for name, value in sorted(arguments.items()))]


def _with_disk_hint(exc: ImageBuildError, cache: Path) -> ImageBuildError:
    if "no space left on device" not in str(exc):
        return exc
    free = shutil.disk_usage(cache).free / 1e9
    return ImageBuildError(f"the disk under {cache} is full ({free:.0f} GB free now): committing a layer needs about "
                           f"twice its size on top of the image being built; free space, or move the cache with "
                           f"SEGFLOW_IMAGE_CACHE.\n{exc}")


def _remove_other_archives(archive: Path) -> None:
    if archive.parent.is_dir():
        for old in archive.parent.iterdir():
            if old.suffix in (".tar", ".json") and old.stem != archive.stem:
                old.unlink(missing_ok=True)


def _forget_older(repository: str, reference: str, podman: Podman) -> None:
    """Keep disk bounded: older tags of the repository leave podman's storage, then the layers nothing uses.

    Only after the build: their intermediate images are the layer cache the new build reuses.
    """
    try:
        if stale := [name for name in podman.tags(repository) if name != reference]:
            podman.run("rmi", *stale)
        podman.run("image", "prune", "--force")
    except ImageBuildError as exc:  # e.g. an old image a container still uses: the build itself succeeded
        print(f"warning: older images of {repository} stay: {exc}", flush=True)
