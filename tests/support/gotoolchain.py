"""A Go toolchain for tests/support/gobuild.py: the machine's own when it is new enough, else one fetched and verified.

A fresh machine needs no Go installed: the Go module proxy serves every Go release as the module
golang.org/toolchain (the way `go` itself switches toolchains, GOTOOLCHAIN), and the checksum
database records its hash. The release and its hashes are pinned here, as go.sum pins a module,
so a proxy or a TLS middlebox that alters the download is caught before anything of it runs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GO_VERSION = "1.26.8"
# sum.golang.org's go.sum lines for golang.org/toolchain v0.0.1-go1.26.8.<platform>, looked up at
# https://proxy.golang.org/sumdb/sum.golang.org/lookup/golang.org/toolchain@v0.0.1-go1.26.8.linux-amd64
ZIP_SUMS = {
    "linux-amd64": "h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=",
    "linux-arm64": "h1:sYL/O6MqS68ML0kjsQ36WoYIpJqkw60TxizWUYUKQMc=",
}
DEFAULT_PROXY = "https://proxy.golang.org"
INSTALL_HINT = "install Go from https://go.dev/dl (its go/bin on PATH)"


class NoToolchain(RuntimeError):
    """No Go toolchain new enough, and none could be fetched; the message says why and what to do."""


@dataclass(frozen=True)
class Toolchain:
    go: str  # the go command
    version: str  # as `go env GOVERSION` says it, e.g. go1.26.8
    fetch_seconds: float = 0.0  # time spent fetching it in this process; 0 when it was there


def required_version(go_mods: Iterable[Path]) -> str:
    """The newest `go` line among these go.mod files: the oldest Go that builds every one of them."""
    lines = [re.search(r"^go (\S+)", path.read_text(), re.MULTILINE) for path in go_mods]
    versions = [line.group(1) for line in lines if line]
    if not versions:
        raise ValueError("no go.mod with a `go` line among those given")
    return max(versions, key=_numbers)


def find(minimum: str, cache: Path) -> Toolchain:
    """A go command of version MINIMUM or newer: on PATH, in /usr/local/go, or fetched into CACHE once per process."""
    found = _find(minimum, cache)
    if isinstance(found, NoToolchain):
        raise found
    return found


@functools.cache
def _find(minimum: str, cache: Path) -> Toolchain | NoToolchain:
    # Cached with its failure too, so that each build of a session does not download again to fail again.
    candidates = [shutil.which("go"), "/usr/local/go/bin/go", str(_goroot(cache) / "bin" / "go")]
    seen = []
    for candidate in dict.fromkeys(c for c in candidates if c and Path(c).is_file()):
        version = _version_of(candidate)
        seen.append(f"{candidate} ({version or 'does not run'})")
        if version and _numbers(version) >= _numbers(minimum):
            return Toolchain(candidate, version)
    try:
        return _fetch(minimum, cache)
    except NoToolchain as exc:
        found = f"found only {', '.join(seen)}" if seen else "no `go` on PATH"
        return NoToolchain(f"the builds need Go >= {minimum}; {found}, and fetching one failed: {exc}")


def _version_of(go: str) -> str:
    try:
        result = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "GOTOOLCHAIN": "local"})
    except OSError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _numbers(version: str) -> tuple[int, int, int]:
    """go1.26.8 -> (1, 26, 8); a release candidate (go1.27rc1) sorts before its release (go1.27.0)."""
    match = re.match(r"(?:go)?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:
        raise ValueError(f"{version!r} is not a Go version (like go1.26.8 or 1.26.0)")
    major, minor, patch = match.groups()
    prerelease = patch is None and len(version) > match.end()
    return int(major), int(minor), -1 if prerelease else int(patch or 0)


def _platform() -> str:
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"{platform.system().lower()}-{machine}"


def _goroot(cache: Path) -> Path:
    return cache / f"go{GO_VERSION}.{_platform()}"


def _fetch(minimum: str, cache: Path) -> Toolchain:
    """GO_VERSION from the Go module proxy, checked against ZIP_SUMS and unpacked into CACHE."""
    if _numbers(GO_VERSION) < _numbers(minimum):
        raise NoToolchain(f"the pinned go{GO_VERSION} is older than that: raise GO_VERSION and ZIP_SUMS in "
                          f"{__file__}, or {INSTALL_HINT}")
    want = ZIP_SUMS.get(_platform())
    if want is None:
        raise NoToolchain(f"no toolchain hash is pinned for {_platform()} in {__file__}: {INSTALL_HINT}")
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as scratch:
        archive = _download(_zip_url(), Path(scratch) / "toolchain.zip")
        got = _hash1(archive)
        if got != want:
            raise NoToolchain(f"{_zip_url()} hashes to {got}, not to its checksum-database hash {want}: the proxy "
                              f"or a middlebox altered it, or the download broke; try again, or {INSTALL_HINT}")
        _unpack(archive, Path(scratch) / "unpacked", _goroot(cache))
    go = str(_goroot(cache) / "bin" / "go")
    return Toolchain(go, _version_of(go), time.monotonic() - started)


def _zip_url() -> str:
    """The toolchain module's zip on the first proxy GOPROXY names (proxy.golang.org by default)."""
    proxies = [p for p in re.split(r"[,|]", os.environ.get("GOPROXY", DEFAULT_PROXY)) if p.startswith("http")]
    if not proxies:
        raise NoToolchain(f"GOPROXY={os.environ['GOPROXY']!r} names no module proxy to fetch Go from: set "
                          f"GOPROXY={DEFAULT_PROXY}, or {INSTALL_HINT}")
    return f"{proxies[0].rstrip('/')}/golang.org/toolchain/@v/v0.0.1-go{GO_VERSION}.{_platform()}.zip"


def _download(url: str, path: Path) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, path.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as exc:
        raise NoToolchain(f"downloading {url} failed ({exc}): check the network or GOPROXY, or {INSTALL_HINT}") from exc
    return path


def _hash1(archive: Path) -> str:
    """The module zip's go.sum hash ("h1:"), as golang.org/x/mod/sumdb/dirhash.HashZip computes it."""
    summary = hashlib.sha256()
    with zipfile.ZipFile(archive) as zipped:
        for name in sorted(zipped.namelist()):
            with zipped.open(name) as member:
                summary.update(f"{hashlib.file_digest(member, 'sha256').hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def _unpack(archive: Path, scratch: Path, goroot: Path) -> None:
    """Unpack as `go` does its own toolchain downloads: commands made executable, _go.mod files restored as go.mod.

    A module zip cannot hold nested go.mod files (they would start other modules) nor file modes,
    so the toolchain module ships src/go.mod and the others as _go.mod, and no execute bits.
    The tree is renamed into place only once complete, so a half-unpacked one is never used.
    """
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(scratch)
    root = scratch / "golang.org" / f"toolchain@v0.0.1-go{GO_VERSION}.{_platform()}"
    for renamed in root.rglob("_go.mod"):
        shutil.copyfile(renamed, renamed.with_name("go.mod"))
    commands = [*(root / "pkg" / "tool").rglob("*"), *(root / "lib").rglob("go_*_*_exec"), *(root / "bin").rglob("*")]
    for path in commands:
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o111)
    try:
        root.rename(goroot)
    except OSError:
        if not (goroot / "bin" / "go").is_file():  # else another process unpacked it first
            raise
