"""S3 store against a real S3-compatible server on loopback (see tests/conftest.py)."""

import io
import time

import pytest
from minio import Minio

from segflow.errors import StoreError
from segflow.store import open_store, publish_version
from segflow.store.versions import list_versions, read_manifest


def test_roundtrip_large_multipart_object(bucket, tmp_path):
    store = open_store(f"s3://{bucket}/prefix")
    payload = bytes(range(256)) * (24 * 1024 * 4)  # 24 MiB: more than one multipart part
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    digest = store.put_file("data/big.bin", source)
    info = store.info("data/big.bin")
    assert info.size == len(payload) and info.sha256 == digest
    assert store.get_file("data/big.bin", tmp_path / "back.bin").read_bytes() == payload
    assert [o.key for o in store.list("data")] == ["data/big.bin"]


def test_child_store_and_versions(bucket, tmp_path):
    store = open_store(f"s3://{bucket}").child("datasets/x")
    local = tmp_path / "v"
    local.mkdir()
    (local / "manifest.json").write_text('{"ok": true}')
    (local / "shard.npy").write_bytes(b"\x00" * 10)
    publish_version(store, local, "abc")
    assert read_manifest(store) == ("abc", {"ok": True})
    assert [v.version for v in list_versions(store)] == ["abc"]


def test_tampered_object_is_refused(bucket, s3_env, tmp_path):
    store = open_store(f"s3://{bucket}")
    store.put_bytes("k", b"good")
    client = Minio(s3_env.endpoint.removeprefix("http://"), access_key=s3_env.access_key,
                   secret_key=s3_env.secret_key, secure=False)
    client.put_object(bucket, "k", io.BytesIO(b"evil"), 4, metadata={"sha256": store.info("k").sha256})
    with pytest.raises(StoreError, match="is corrupt"):
        store.get_bytes("k")


def test_missing_object_is_none_and_get_says_so(bucket):
    store = open_store(f"s3://{bucket}")
    assert store.info("nope") is None
    with pytest.raises(StoreError, match="does not exist"):
        store.get_bytes("nope")


def test_missing_bucket_names_the_bucket(s3_env):
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x").put_bytes("k", b"v")


def test_missing_credentials_fail_before_any_request(s3_env, monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StoreError, match="no S3 credentials.*AWS_SECRET_ACCESS_KEY"):
        open_store("s3://bucket/x")


def test_invalid_bucket_name_is_named(s3_env):
    with pytest.raises(StoreError, match="'b' in 's3://b/x' is not a valid bucket name"):
        open_store("s3://b/x")


def test_missing_endpoint(monkeypatch):
    monkeypatch.delenv("SEGFLOW_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(StoreError, match="no S3 endpoint configured"):
        open_store("s3://bucket/x")


def test_server_down_is_a_clear_error_after_bounded_retries(s3_env, closed_port, monkeypatch):
    monkeypatch.setenv("SEGFLOW_S3_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot reach the S3 endpoint .* after 2 retries.*is the server running"):
        open_store("s3://bucket/x", retries=2, backoff=0.05).put_bytes("k", b"v")
    assert time.monotonic() - started < 10


def test_wrong_credentials_are_named(s3_env, bucket, monkeypatch):
    if s3_env.kind != "minio":
        pytest.skip(f"the {s3_env.kind} S3 server accepts any credentials; MinIO checks them")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(StoreError, match="refused the credentials"):
        open_store(f"s3://{bucket}").put_bytes("k", b"v")


def test_fetch_url_is_a_presigned_get_that_needs_no_credentials(bucket):
    import urllib.request

    store = open_store(f"s3://{bucket}/deploy")
    store.put_bytes("tiny-1.mar", b"archive")
    url = store.fetch_url("tiny-1.mar", expires_s=60)
    assert url.split("?")[0].endswith(f"/{bucket}/deploy/tiny-1.mar") and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=30) as response:  # a plain GET, as TorchServe sends it
        assert response.read() == b"archive"
    with pytest.raises(StoreError, match="tiny-2.mar does not exist"):
        store.fetch_url("tiny-2.mar")
