"""S3 store against a real S3 server on loopback: MinIO built from its Go module (moto where it cannot be).

Credentials, IAM and bucket policies are MinIO-only checks (moto accepts any key); they skip
with the reason where moto stands in. See tests/support/s3server.py.
"""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from minio import Minio
from minio.commonconfig import ENABLED
from minio.versioningconfig import VersioningConfig

from segflow.errors import StoreError
from segflow.store import list_versions, open_store, publish_version, read_manifest
from support.s3server import read_only_user


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


def test_a_store_lists_its_own_folder_not_its_siblings(bucket):
    open_store(f"s3://{bucket}/datasets/x2").put_bytes("a.bin", b"sibling")
    store = open_store(f"s3://{bucket}/datasets/x")
    store.put_bytes("b.bin", b"own")
    assert [o.key for o in store.list()] == ["b.bin"]


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


def test_wrong_credentials_are_named(minio_server, s3_env, bucket, monkeypatch):
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


def test_an_unknown_access_key_is_refused(minio_server, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "no-such-user")
    with pytest.raises(StoreError, match=r"refused the credentials .*\(InvalidAccessKeyId\)"):
        open_store(f"s3://{bucket}").put_bytes("k", b"v")


def test_a_read_only_user_reads_and_is_refused_writes(minio_server, bucket, monkeypatch):
    """What the serving pod's keys should be: read the bucket, write nothing (an IAM policy on a MinIO user)."""
    open_store(f"s3://{bucket}").put_bytes("models/m.mar", b"archive")
    reader = read_only_user(minio_server, bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", reader[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", reader[1])
    store = open_store(f"s3://{bucket}")
    assert store.get_bytes("models/m.mar") == b"archive" and [o.key for o in store.list()] == ["models/m.mar"]
    with pytest.raises(StoreError, match=r"refused the credentials .*\(AccessDenied\)"):
        store.put_bytes("models/evil.mar", b"x")
    with pytest.raises(StoreError, match=r"\(AccessDenied\)"):
        store.delete("models/m.mar")


def test_a_bucket_policy_opens_one_prefix_to_anonymous_reads_only(minio_server, bucket):
    store = open_store(f"s3://{bucket}")
    store.put_bytes("public/card.json", b"{}")
    store.put_bytes("private/model.pt", b"weights")
    _client(minio_server).set_bucket_policy(bucket, json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/public/*"]}]}))
    base = f"{minio_server.endpoint}/{bucket}"
    with urllib.request.urlopen(f"{base}/public/card.json", timeout=30) as response:
        assert response.read() == b"{}"
    for request in (urllib.request.Request(f"{base}/private/model.pt"),
                    urllib.request.Request(f"{base}/public/new.json", data=b"x", method="PUT",
                                           headers={"Content-Type": "application/json"})):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403, request.full_url


def test_a_versioned_bucket_keeps_every_version_behind_the_store(s3_env, bucket):
    client = _client(s3_env)
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    store = open_store(f"s3://{bucket}")
    store.put_bytes("model/card.json", b"v1")
    store.put_bytes("model/card.json", b"v2")
    assert store.get_bytes("model/card.json") == b"v2"  # the sha256 of the latest version is checked
    store.delete("model/card.json")
    assert store.info("model/card.json") is None and store.list() == []
    versions = list(client.list_objects(bucket, prefix="model/", include_version=True))
    assert [v.is_delete_marker for v in versions].count(True) == 1 and len(versions) == 3
    oldest = [v for v in versions if not v.is_delete_marker][-1]
    with contextlib.closing(client.get_object(bucket, "model/card.json", version_id=oldest.version_id)) as old:
        assert old.read() == b"v1"


def test_a_multipart_upload_killed_midway_leaves_no_object(s3_env, bucket, tmp_path):
    """A writer SIGKILLed between parts: the parts stay invisible (an incomplete upload), the key never appears."""
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(15 * 1024 * 1024))  # 3 parts of 5 MiB (the SDK's smallest part size)
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, f"s3://{bucket}/runs", str(source)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().startswith("part "), writer.stderr.read()
        # MinIO lists the uploads of one key: the prefix must be the key itself.
        uploads = _client(s3_env)._list_multipart_uploads(bucket, prefix="runs/big.bin").uploads
        assert [u.object_name for u in uploads] == ["runs/big.bin"]
        parts = _client(s3_env)._list_parts(bucket, "runs/big.bin", uploads[0].upload_id).parts
        assert parts and all(p.size == 5 * 1024 * 1024 for p in parts)  # the server holds some of it
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    store = open_store(f"s3://{bucket}/runs")
    assert store.info("big.bin") is None and store.list() == []
    with pytest.raises(StoreError, match="does not exist"):
        store.get_file("big.bin", tmp_path / "back.bin")
    assert store.put_file("big.bin", source) == store.info("big.bin").sha256  # the next attempt completes


# Uploads through the store with a pause after each part, so the test can kill it between parts.
SLOW_WRITER = """
import sys, time
from pathlib import Path
from minio import Minio
from segflow.store import open_store

upload_part = Minio._upload_part
def slow_part(self, *args, **kwargs):
    etag = upload_part(self, *args, **kwargs)
    print("part uploaded", flush=True)
    time.sleep(120)
    return etag
Minio._upload_part = slow_part
open_store(sys.argv[1]).put_file("big.bin", Path(sys.argv[2]))
"""


def _client(server) -> Minio:
    return Minio(server.address, access_key=server.access_key, secret_key=server.secret_key, secure=False)

