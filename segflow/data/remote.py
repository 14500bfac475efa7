"""Raw datasets in object storage: `s3://bucket/prefix` (or KFP's `minio://`) -> a local folder the readers walk.

In a Kubeflow cluster nothing mounts a volume into the prep step, so the raw dataset, as its
authors distribute it, sits in MinIO/S3 and prep copies it into a local cache first: the format
readers then see exactly the folder tree they see on a laptop, and the source hashes (relative
paths + file hashes) and so the dataset version come out the same.

A cache entry is named by a hash of the endpoint, the URI and the listing (every key with its
size and modification time), so a second prep of the same objects downloads nothing, and any
upload, replacement or deletion under the prefix makes a new entry. An entry appears only when
complete (downloaded into a hidden staging folder, then renamed), so a failed download leaves
nothing that a later run could take for the dataset.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from rich.progress import Progress as Bars

from segflow.data.dataset import cache_root
from segflow.errors import DataError
from segflow.store import S3Settings, Store, open_store

REMOTE_SCHEMES = ("s3", "minio")  # minio:// is how KFP names objects in its own MinIO


@dataclass(frozen=True)
class RawFolder:
    """A raw dataset on this machine (`root`) and where it came from (`origin`: a folder or an s3:// URI)."""

    root: Path
    origin: str
    downloaded: int  # objects fetched by this call: 0 for a local folder or a cache hit


@dataclass(frozen=True)
class _RawObject:
    key: str  # in the bucket
    path: str  # relative to the dataset's prefix: its path in the local folder
    size: int
    modified: str


def locate_raw(location: str | Path | None, bars: Bars) -> RawFolder | None:
    """The raw dataset at `location` (a folder, s3:// or minio:// URI) as a local folder; None when there is none."""
    if location is None or str(location) == "":
        return None
    if urlparse(str(location)).scheme in REMOTE_SCHEMES:
        return fetch_raw(str(location), bars)
    root = Path(location).expanduser().resolve()
    return RawFolder(root, str(root), downloaded=0)


def fetch_raw(uri: str, bars: Bars) -> RawFolder:
    """Every object under `uri`, in the cache, downloaded unless the same listing was downloaded before."""
    bucket, prefix = _bucket_and_prefix(uri)
    canonical = f"s3://{bucket}/{prefix}".rstrip("/")
    store = open_store(f"s3://{bucket}")
    objects = _listing(store, prefix, canonical)
    entry = cache_root() / "raw" / _cache_key(canonical, objects)
    if entry.is_dir():
        return RawFolder(entry, canonical, downloaded=0)
    _download(store, objects, entry, bars, canonical)
    return RawFolder(entry, canonical, downloaded=len(objects))


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise DataError(f"{uri!r} names no bucket; use s3://BUCKET/PREFIX (the folder the dataset was uploaded to)")
    return parsed.netloc, parsed.path.strip("/")


def _listing(store: Store, prefix: str, uri: str) -> list[_RawObject]:
    """The objects under `prefix/` (not under a sibling like `prefix2/`), folder markers left out."""
    under = f"{prefix}/" if prefix else ""
    objects = [_RawObject(o.key, o.key[len(under):], o.size, o.modified.isoformat())
               for o in store.list(prefix) if o.key.startswith(under) and not o.key.endswith("/")]
    if not objects:
        raise DataError(
            f"{uri} holds no objects; upload the dataset folder as distributed first "
            f"(e.g. `mc cp --recursive ./FOLDER/ ALIAS/{uri.removeprefix('s3://')}`) or fix the bucket/prefix"
        )
    for obj in objects:
        if ".." in PurePosixPath(obj.path).parts:
            raise DataError(f"object key {obj.key!r} under {uri} climbs out of the dataset folder; rename it")
    return objects


def _cache_key(uri: str, objects: list[_RawObject]) -> str:
    listing = [(o.path, o.size, o.modified) for o in objects]
    payload = {"endpoint": S3Settings.from_env().endpoint, "uri": uri, "objects": listing}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _download(store: Store, objects: list[_RawObject], entry: Path, bars: Bars, uri: str) -> None:
    """Download into a staging folder beside `entry` and rename it into place only when every object is in.

    Not store.download_tree: that lists again (the cache key must name exactly what is downloaded),
    draws no progress and cannot check sizes against the listing.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=entry.parent))
    try:
        task = bars.add_task(f"downloading {uri}", total=len(objects))
        for obj in objects:
            path = store.get_file(obj.key, staging / obj.path)
            if path.stat().st_size != obj.size:
                raise DataError(f"{uri}/{obj.path} changed while it was downloaded; run prep again")
            bars.advance(task)
        _publish(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, entry: Path) -> None:
    try:
        staging.rename(entry)
    except OSError:
        if not entry.is_dir():  # else another prep of the same listing finished first: use its copy
            raise
