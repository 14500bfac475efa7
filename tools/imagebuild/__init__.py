"""Container images without a Docker daemon or a registry: Debian bases from mmdebstrap, podman builds, derived tags.

    from imagebuild import Base, ImageSpec, build
    spec = ImageSpec(name="minio", repository="localhost/segflow-test/minio", version="2026.02.12",
                     containerfile=folder / "Containerfile", context=folder,
                     bases={"BASE": Base(packages=("ca-certificates",))})   # or {"BASE": None}: FROM scratch
    image = build(spec)   # Image(reference="localhost/segflow-test/minio:2026.02.12-3f2a9c0112ab", archive, size)

A Containerfile names its bases by build argument (`ARG BASE` / `FROM ${BASE}`); the tag is
VERSION-DIGEST, the digest covering the context files (after .dockerignore), the Containerfile and
the base definitions; a tag already built is found in the cache without starting podman. The
archive is a docker-archive: `ctr -n k8s.io images import FILE` loads it into containerd,
`skopeo copy docker-archive:FILE docker://REGISTRY/NAME:TAG` pushes it. segflow's own two images
are in `imagebuild.project`; `python -m imagebuild --help` is the command line.
"""

from imagebuild.build import Image, build, cache_dir
from imagebuild.context import context_files, inputs_tag
from imagebuild.errors import ImageBuildError
from imagebuild.spec import Base, ImageSpec

__all__ = ["Base", "Image", "ImageBuildError", "ImageSpec", "build", "cache_dir", "context_files", "inputs_tag"]
