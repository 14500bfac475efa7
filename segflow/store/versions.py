"""Versioned artifacts: the same layout for datasets, models and archives in any store.

    ARTIFACT_URI/
        LATEST                  the current version id (text)
        <version>/manifest.json what the version holds; uploaded after everything it names
        <version>/...

A version id is a content hash, so publishing the same content twice is a no-op, and a reader
that finds a manifest finds every file it lists. LATEST moves only after a whole version is in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from segflow.errors import StoreError
from segflow.store.base import Store

MANIFEST = "manifest.json"
LATEST = "LATEST"


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created: datetime
    is_latest: bool


def publish_version(store: Store, local_dir: Path, version: str) -> str:
    """Upload `local_dir` (which must hold manifest.json) as `version` and make it the latest."""
    if not (local_dir / MANIFEST).is_file():
        raise StoreError(f"{local_dir} has no {MANIFEST}; an artifact version must describe itself")
    store.put_tree(local_dir, prefix=version, last=(MANIFEST,))
    store.put_text(LATEST, version)
    return version


def latest_version(store: Store) -> str | None:
    if not store.exists(LATEST):
        return None
    return store.get_text(LATEST).strip() or None


def list_versions(store: Store) -> list[VersionInfo]:
    latest = latest_version(store)
    found = [
        VersionInfo(obj.key.split("/")[0], obj.modified, obj.key.split("/")[0] == latest)
        for obj in store.list()
        if obj.key.count("/") == 1 and obj.key.endswith("/" + MANIFEST)
    ]
    return sorted(found, key=lambda v: v.created)


def read_manifest(store: Store, version: str | None = None) -> tuple[str, dict]:
    """The manifest of `version` (default: the latest) and the version id it came from.

    `store` may also be rooted at a version folder itself (it then holds manifest.json).
    """
    if version is None and store.exists(MANIFEST):
        return "", json.loads(store.get_text(MANIFEST))
    version = version or latest_version(store)
    if version is None:
        raise StoreError(
            f"{store.uri} holds no artifact (no {LATEST} and no {MANIFEST}); "
            "check the URI or run the step that writes it"
        )
    key = f"{version}/{MANIFEST}"
    if not store.exists(key):
        known = ", ".join(v.version for v in list_versions(store)) or "none"
        raise StoreError(f"{store.uri} has no version {version!r}; versions there: {known}")
    return version, json.loads(store.get_text(key))
