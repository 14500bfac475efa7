"""The artifact store interface: one small API over a local folder and S3/MinIO.

Every step of the pipeline reads and writes artifacts by URI through a `Store`, never by
reaching into another step's files. Two guarantees hold for every backend:
- a write is atomic: nothing is visible under the final key until the object is complete;
- a read is verified: the sha256 recorded at write time is checked against the bytes read.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from segflow.errors import StoreError

CHUNK = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime
    sha256: str | None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store(ABC):
    """Objects under one root URI, addressed by `/`-separated keys relative to it."""

    uri: str

    @abstractmethod
    def put_file(self, key: str, path: Path) -> str:
        """Upload a local file atomically; return its sha256."""

    @abstractmethod
    def get_file(self, key: str, dest: Path) -> Path:
        """Download to `dest` (atomically), verifying the recorded sha256."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo | None:
        """Size, time and recorded sha256 of an object, or None if it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; removing a missing object is not an error."""

    @abstractmethod
    def fetch_url(self, key: str, expires_s: int = 3600) -> str:
        """A URL another program can download the object from: file:// locally, a presigned GET on S3."""

    def local_path(self) -> Path | None:
        """The folder holding this store's objects when it is on this machine's file system, else None.

        Code that can work on files in place (a dataset read without copying, a search's working
        folder beside its run) asks the store, instead of testing which backend it is.
        """
        return None

    def child(self, prefix: str) -> Store:
        """The same store rooted one or more folders deeper."""
        return open_store(join_uri(self.uri, prefix), **self._child_options())

    def _child_options(self) -> dict:
        return {}

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def put_bytes(self, key: str, data: bytes) -> str:
        with tempfile.TemporaryDirectory(prefix="segflow-put-") as tmp:
            path = Path(tmp) / "object"
            path.write_bytes(data)
            return self.put_file(key, path)

    def get_bytes(self, key: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="segflow-get-") as tmp:
            return self.get_file(key, Path(tmp) / "object").read_bytes()

    def put_text(self, key: str, text: str) -> str:
        return self.put_bytes(key, text.encode())

    def get_text(self, key: str) -> str:
        return self.get_bytes(key).decode()

    def put_tree(self, local_dir: Path, prefix: str = "", last: tuple[str, ...] = ()) -> dict[str, str]:
        """Upload every file under `local_dir`; the relative paths in `last` go up after the rest.

        Putting an index (a manifest) last means a reader who finds it finds everything it names.
        Returns relative path -> sha256.
        """
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        ordered = [p for p in files if p.relative_to(local_dir).as_posix() not in last]
        ordered += [local_dir / name for name in last if (local_dir / name).is_file()]
        return {
            p.relative_to(local_dir).as_posix(): self.put_file(
                join_key(prefix, p.relative_to(local_dir).as_posix()), p
            )
            for p in ordered
        }

    def _verify(self, key: str, path: Path, expected: str | None) -> None:
        if expected is None:
            return
        actual = sha256_file(path)
        if actual != expected:
            path.unlink(missing_ok=True)
            raise StoreError(
                f"{join_uri(self.uri, key)} is corrupt: its sha256 is {actual}, but {expected} was "
                "recorded when it was written; re-create the artifact (run the step that wrote it again)"
            )


def join_key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def join_uri(uri: str, key: str) -> str:
    return uri.rstrip("/") + "/" + key.strip("/") if key.strip("/") else uri


def open_store(uri: str | Path, **options) -> Store:
    """A store for `file://...`, a plain path, or `s3://bucket/prefix` (options: S3Settings fields)."""
    text = str(uri)
    if text.startswith("s3://"):
        from segflow.store.s3 import S3Store

        return S3Store(text, **options)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise StoreError(f"unsupported store URI scheme {scheme!r} in {text!r}; use a path, file://PATH or s3://BUCKET/PREFIX")
    from segflow.store.local import LocalStore

    return LocalStore(text)


def download_tree(store: Store, prefix: str, dest: Path) -> Path:
    """Copy every object under `prefix` into `dest`, verified; replaces `dest` only when complete."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
    try:
        for obj in store.list(prefix):
            store.get_file(obj.key, staging / obj.key[len(join_key(prefix)) :].lstrip("/"))
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
