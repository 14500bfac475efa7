"""The artifact store: local folders and S3/MinIO behind one small interface."""

from segflow.store.base import ObjectInfo, Store, download_tree, join_key, join_uri, open_store, sha256_file
from segflow.store.versions import latest_version, list_versions, publish_version

__all__ = [
    "ObjectInfo",
    "Store",
    "download_tree",
    "join_key",
    "join_uri",
    "latest_version",
    "list_versions",
    "open_store",
    "publish_version",
    "sha256_file",
]
