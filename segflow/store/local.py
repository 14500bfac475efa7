"""A store in a local folder: what `segflow run` uses on a laptop with no MinIO.

Atomicity comes from writing a hidden temporary file in the target folder and renaming it
(rename is atomic within one file system). The sha256 of each object lives beside it in a
hidden `.NAME.sha256` file, which listings skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from segflow.errors import StoreError
from segflow.store.base import ObjectInfo, Store, sha256_file


class LocalStore(Store):
    def __init__(self, uri: str):
        root = uri.removeprefix("file://")
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_posix() if not uri.startswith("file://") else uri
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store root {self.root} is a file, not a folder; choose another --out")

    def local_path(self) -> Path:
        return self.root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StoreError(f"key {key!r} points outside the store root {self.root}")
        return path

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(f".{path.name}.sha256")

    def put_file(self, key: str, path: Path) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = sha256_file(path)
        _atomic_write(self._sidecar(target), lambda tmp: tmp.write_text(digest))
        _atomic_write(target, lambda tmp: shutil.copyfile(path, tmp))
        return digest

    def get_file(self, key: str, dest: Path) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise StoreError(f"{self.uri}/{key} does not exist; run the step that writes it first")
        dest.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(dest, lambda tmp: shutil.copyfile(source, tmp))
        self._verify(key, dest, self._recorded(source))
        return dest

    def _recorded(self, path: Path) -> str | None:
        sidecar = self._sidecar(path)
        return sidecar.read_text().strip() if sidecar.is_file() else None

    def info(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        stat = path.stat()
        return ObjectInfo(
            key=key.strip("/"),
            size=stat.st_size,
            modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            sha256=self._recorded(path),
        )

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root).as_posix()
            hidden = any(part.startswith(".") for part in path.relative_to(self.root).parts)
            if path.is_file() and not hidden and rel.startswith(prefix.strip("/")):
                found.append(self.info(rel))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._sidecar(path).unlink(missing_ok=True)

    def fetch_url(self, key: str, expires_s: int = 3600) -> str:
        path = self._path(key)
        if not path.is_file():
            raise StoreError(f"{self.uri}/{key} does not exist; run the step that writes it first")
        return path.as_uri()


def _atomic_write(target: Path, write) -> None:
    """Call write(tmp) on a hidden temporary file beside `target`, then rename it into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
