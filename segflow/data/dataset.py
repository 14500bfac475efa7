"""Open a prepared dataset version by URI and hand its splits to training as arrays.

Local stores are read in place; remote ones (S3/MinIO) are downloaded once into a cache keyed
by the dataset hash, so every Ray worker on a node shares one copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segflow.data.manifest import Manifest
from segflow.errors import DataError
from segflow.store import MANIFEST, download_tree, open_store, read_manifest, sha256_file


@dataclass(frozen=True)
class PreparedDataset:
    uri: str
    version: str
    manifest: Manifest
    folder: Path
    verified: bool  # True when the download already checked every file's sha256

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images NxHxWxC uint8, targets) of one split, each shard's sha256 checked."""
        shards = self.manifest.shards.get(split)
        if not shards:
            raise DataError(
                f"dataset {self.uri} has no {split!r} split; it has: {', '.join(self.manifest.shards)}"
            )
        images, targets = [], []
        for shard in shards:
            for rel, expected, out in ((shard.images, shard.images_sha256, images),
                                       (shard.targets, shard.targets_sha256, targets)):
                path = self.folder / rel
                if not self.verified and sha256_file(path) != expected:
                    raise DataError(f"{path} does not match the manifest's sha256; prepare the dataset again")
                out.append(np.load(path, mmap_mode="r"))
        return np.concatenate(images), np.concatenate(targets)


def cache_root() -> Path:
    return Path(os.environ.get("SEGFLOW_CACHE", Path.home() / ".cache" / "segflow"))


def open_dataset(uri: str, version: str | None = None) -> PreparedDataset:
    store = open_store(uri)
    version, raw = read_manifest(store, version)
    manifest = Manifest.model_validate(raw)
    local = store.local_path()
    if local is not None:
        return PreparedDataset(store.uri, version, manifest, local / version, verified=False)
    folder = cache_root() / "datasets" / manifest.dataset_hash
    if not (folder / MANIFEST).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        download_tree(store, version, folder)
    return PreparedDataset(store.uri, version, manifest, folder, verified=True)
