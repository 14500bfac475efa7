"""What an image is built from, declared as data: a Containerfile, a context folder and Debian bases.

A `Base` is a Debian root filesystem made by mmdebstrap from Debian's archive; no registry is
involved. Its definition (suite, sources, variant, packages, dpkg filters) is also its cache key,
so changing a package list makes a new base, and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imagebuild.errors import ImageBuildError

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# No documentation, manual pages or translations in any image (licences stay); the JRE's
# post-install script links its manual page into man1, so that folder must exist.
DPKG_FILTERS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
ESSENTIAL_HOOK = 'mkdir -p "$1/usr/share/man/man1"'
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Base:
    """A Debian root filesystem: `variant` (minbase: apt, dpkg, bash, coreutils) plus `packages`.

    Sources are the suite, its updates and its security updates, so a base made today carries
    today's fixes; a base is remade only when its definition changes (or the cache is cleared).
    """

    packages: tuple[str, ...] = ()
    suite: str = "bookworm"
    variant: str = "minbase"
    mirror: str = MIRROR

    def sources(self) -> list[str]:
        return [f"deb {self.mirror} {self.suite} main",
                f"deb {self.mirror} {self.suite}-updates main",
                f"deb {SECURITY_MIRROR} {self.suite}-security main"]

    def mmdebstrap_options(self) -> list[str]:
        """mmdebstrap's options, without the output file: what the base is, and so what its key covers."""
        include = [f"--include={','.join(sorted(self.packages))}"] if self.packages else []
        return [f"--variant={self.variant}", *include,
                # /bin, /lib and /sbin as links into /usr, without the usrmerge package (and the perl it pulls in)
                "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                *(f"--dpkgopt={f}" for f in DPKG_FILTERS), f"--essential-hook={ESSENTIAL_HOOK}", self.suite]

    @property
    def key(self) -> str:
        definition = json.dumps([self.mmdebstrap_options(), self.sources()])
        return hashlib.sha256(definition.encode()).hexdigest()[:16]

    @property
    def reference(self) -> str:
        """The name the base is imported under in podman's storage."""
        return f"localhost/imagebuild-base:{self.key}"


@dataclass(frozen=True)
class ImageSpec:
    """One image: built from `containerfile` with `context`, tagged `repository:VERSION-DIGEST`.

    `bases` maps each build argument the Containerfile's FROM lines use to a `Base`, or to None
    for an empty base (FROM scratch, for a static binary). `exclude` lists context files (relative,
    with /) that are sent but left out of the tag's digest: a generated file that records the tag.
    """

    name: str
    repository: str
    containerfile: Path
    context: Path
    version: str
    bases: Mapping[str, Base | None] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ImageBuildError(f"image name {self.name!r}: use lower-case letters, digits, '.', '_' and '-'")
        if not _NAME.match(self.version):
            raise ImageBuildError(f"image {self.name}: version {self.version!r} cannot start a tag")
        if clash := set(self.bases) & set(self.build_args):
            raise ImageBuildError(f"image {self.name}: {sorted(clash)} are both bases and build arguments")
