"""The artifact store: local folders and S3/MinIO behind one small interface, and versioned artifacts in it.

Other packages use these names only; the backends (local, s3) are chosen by `open_store` from the URI.
"""

from segflow.store.base import Store, download_tree, join_uri, open_store, sha256_file
from segflow.store.settings import S3Settings
from segflow.store.versions import (
    MANIFEST,
    VersionInfo,
    latest_version,
    list_versions,
    publish_version,
    read_manifest,
)

__all__ = [
    "MANIFEST",
    "S3Settings",
    "Store",
    "VersionInfo",
    "download_tree",
    "join_uri",
    "latest_version",
    "list_versions",
    "open_store",
    "publish_version",
    "read_manifest",
    "sha256_file",
]
