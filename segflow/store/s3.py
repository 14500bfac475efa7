"""A store in an S3 bucket (MinIO in the cluster and in tests) through the minio SDK.

Objects are uploaded with their sha256 as user metadata (`x-amz-meta-sha256`) and checked on
download. A single PUT, and a multipart upload until it is completed, are invisible under
their key, so a crashed upload never leaves a half object behind. Network errors are retried
a bounded number of times with exponential backoff (urllib3's Retry, which the SDK uses).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import S3Error
from minio.helpers import check_bucket_name
from urllib3.exceptions import HTTPError as Urllib3Error

from segflow.errors import StoreError
from segflow.store.base import ObjectInfo, Store, join_key, sha256_file
from segflow.store.settings import S3Settings

SHA256_META = "sha256"
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken"}


class S3Store(Store):
    def __init__(self, uri: str, **options):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise StoreError(f"{uri!r} names no bucket; use s3://BUCKET/PREFIX")
        try:
            check_bucket_name(parsed.netloc)
        except ValueError:
            raise StoreError(
                f"{parsed.netloc!r} in {uri!r} is not a valid bucket name: use 3-63 lowercase letters, "
                "digits, dots and hyphens"
            ) from None
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.settings = S3Settings.from_env(**options)
        self._options = options
        self.client = _client(self.settings)

    def _child_options(self) -> dict:
        return self._options

    def _key(self, key: str) -> str:
        return join_key(self.prefix, key)

    def put_file(self, key: str, path: Path) -> str:
        digest = sha256_file(path)
        with self._errors(key):
            self.client.fput_object(self.bucket, self._key(key), str(path), metadata={SHA256_META: digest})
        return digest

    def get_file(self, key: str, dest: Path) -> Path:
        info = self.info(key)
        if info is None:
            raise StoreError(f"{self.uri}/{key} does not exist; run the step that writes it first")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(key):
            # fget_object downloads to DEST.part.minio and renames only when complete.
            self.client.fget_object(self.bucket, self._key(key), str(dest))
        self._verify(key, dest, info.sha256)
        return dest

    def info(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors(key):
                stat = self.client.stat_object(self.bucket, self._key(key))
        except _NotFound:
            return None
        metadata = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        return ObjectInfo(
            key=key.strip("/"),
            size=stat.size or 0,
            modified=stat.last_modified,
            sha256=metadata.get(f"x-amz-meta-{SHA256_META}"),
        )

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        # The store's own root is a folder: datasets/x must not list datasets/x2/...
        full = self._key(prefix) or ""
        if self.prefix and not prefix:
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        found = []
        with self._errors(prefix):
            for obj in self.client.list_objects(self.bucket, prefix=full or None, recursive=True):
                found.append(ObjectInfo(obj.object_name[strip:], obj.size or 0, obj.last_modified, None))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.remove_object(self.bucket, self._key(key))

    def fetch_url(self, key: str, expires_s: int = 3600) -> str:
        if self.info(key) is None:
            raise StoreError(f"{self.uri}/{key} does not exist; run the step that writes it first")
        with self._errors(key):
            return self.client.presigned_get_object(self.bucket, self._key(key), expires=timedelta(seconds=expires_s))

    def _errors(self, key: str):
        return _TranslateErrors(self, key)


class _NotFound(Exception):
    pass


class _TranslateErrors:
    """Turn SDK and network exceptions into StoreErrors that say what to do."""

    def __init__(self, store: S3Store, key: str):
        self.store, self.key = store, key

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        settings, where = self.store.settings, f"{self.store.uri}/{self.key}".rstrip("/")
        if isinstance(exc, S3Error):
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise _NotFound() from None
            if exc.code == "NoSuchBucket":
                raise StoreError(
                    f"bucket {self.store.bucket!r} does not exist on {settings.endpoint}; create it "
                    f"(e.g. `mc mb ALIAS/{self.store.bucket}`) or point the URI at an existing bucket"
                ) from None
            if exc.code in CREDENTIAL_CODES:
                raise StoreError(
                    f"{settings.endpoint} refused the credentials for {where} ({exc.code}); check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket policy"
                ) from None
            raise StoreError(f"S3 error on {where}: {exc.code}: {exc.message}") from None
        if isinstance(exc, Urllib3Error | ConnectionError | TimeoutError):
            raise StoreError(
                f"cannot reach the S3 endpoint {settings.endpoint} for {where} after "
                f"{settings.retries} retries ({type(exc).__name__}); is the server running? "
                "Set SEGFLOW_S3_ENDPOINT (e.g. http://127.0.0.1:9000) to the right address"
            ) from None
        return False


def _client(settings: S3Settings) -> Minio:
    if not settings.endpoint:
        raise StoreError(
            "no S3 endpoint configured: set SEGFLOW_S3_ENDPOINT (e.g. http://127.0.0.1:9000) "
            "or pass --s3-endpoint"
        )
    if not settings.access_key or not settings.secret_key:
        raise StoreError(
            f"no S3 credentials for {settings.endpoint}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (in a cluster they come from the MinIO Secret)"
        )
    endpoint = urlparse(settings.endpoint if "://" in settings.endpoint else f"http://{settings.endpoint}")
    retry = urllib3.Retry(
        total=settings.retries,
        backoff_factor=settings.backoff,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=None,  # PUT/DELETE of one key are idempotent
    )
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.connect_timeout, read=120),
        retries=retry,
        maxsize=8,
    )
    return Minio(
        endpoint.netloc,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=endpoint.scheme == "https",
        region=settings.region,
        http_client=http,
    )
