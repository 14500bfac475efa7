"""Debian bases: a root filesystem made by mmdebstrap from Debian's archive, imported into podman.

No registry is needed: the tar is cached by the base's definition (bases/KEY.tar), and the
imported image is named by the same key, so each definition is fetched once per machine.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from imagebuild.errors import ImageBuildError
from imagebuild.podman import Podman, log_tail, require
from imagebuild.spec import Base

MIRROR_TIMEOUT_S = 20


def ensure_base(base: Base, podman: Podman, cache: Path) -> str:
    """The base's podman reference, making and importing it first where the cache lacks it."""
    if podman.exists(base.reference):
        return base.reference
    tar = cache / "bases" / f"{base.key}.tar"
    if not tar.is_file():
        _mmdebstrap(base, tar, cache / "logs" / f"base-{base.key}.log")
    podman.run("import", "--quiet", str(tar), base.reference)
    return base.reference


def _mmdebstrap(base: Base, tar: Path, log: Path) -> None:
    require("mmdebstrap")
    _check_mirror(base)
    tar.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(".partial.tar")
    print(f"making Debian base {base.key} ({base.suite} {base.variant} + {', '.join(base.packages) or 'nothing'})",
          flush=True)
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(["mmdebstrap", *base.mmdebstrap_options(), str(partial), *base.sources()],
                              stdout=out, stderr=subprocess.STDOUT).returncode
    if done:
        partial.unlink(missing_ok=True)
        tail = log_tail(log)
        if any(sign in tail for sign in ("Failed to fetch", "Could not resolve", "Unable to connect",
                                         "Temporary failure resolving", "Connection failed")):
            raise ImageBuildError(f"the Debian mirror {base.mirror} is unreachable; base {base.key} cannot be "
                                  f"made. The end of {log}:\n{tail}")
        raise ImageBuildError(f"mmdebstrap failed ({done}) for base {base.key}; the end of {log}:\n{tail}")
    os.replace(partial, tar)
    print(f"  base {base.key}: {tar.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s", flush=True)


def _check_mirror(base: Base) -> None:
    url = f"{base.mirror}/dists/{base.suite}/InRelease"
    try:
        with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as exc:
        raise ImageBuildError(f"the Debian mirror {base.mirror} is unreachable ({url}: {exc}); the base "
                              f"{base.key} cannot be made without it") from None
