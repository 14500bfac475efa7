"""Local store: atomic writes, verified reads, listing, versions."""

import pytest

from segflow.errors import StoreError
from segflow.store import latest_version, list_versions, open_store, publish_version, read_manifest


def test_roundtrip_records_and_checks_sha256(tmp_path):
    store = open_store(tmp_path / "store")
    digest = store.put_bytes("a/b.bin", b"hello")
    assert store.get_bytes("a/b.bin") == b"hello"
    assert store.info("a/b.bin").sha256 == digest
    assert [o.key for o in store.list()] == ["a/b.bin"]  # sidecars are not listed


def test_corrupted_object_is_refused(tmp_path):
    store = open_store(tmp_path)
    store.put_bytes("x.bin", b"original")
    (tmp_path / "x.bin").write_bytes(b"tampered")
    with pytest.raises(StoreError, match="x.bin is corrupt"):
        store.get_bytes("x.bin")


def test_failed_write_leaves_nothing_under_the_key(tmp_path):
    store = open_store(tmp_path)
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError):
        store.put_file("k.bin", missing)
    assert not store.exists("k.bin")
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".k.bin.sha256")] == []


def test_missing_object_and_escaping_key(tmp_path):
    store = open_store(f"file://{tmp_path}")
    with pytest.raises(StoreError, match="does not exist"):
        store.get_bytes("nope")
    with pytest.raises(StoreError, match="outside the store root"):
        store.put_bytes("../evil", b"x")


def test_unsupported_scheme():
    with pytest.raises(StoreError, match="unsupported store URI scheme 'gs'"):
        open_store("gs://bucket/x")


def test_versions_publish_manifest_last_and_move_latest(tmp_path):
    store = open_store(tmp_path / "artifact")
    assert latest_version(store) is None
    with pytest.raises(StoreError, match="holds no artifact"):
        read_manifest(store)
    for version in ("v1", "v2"):
        local = tmp_path / f"local-{version}"
        local.mkdir()
        (local / "data.txt").write_text(version)
        (local / "manifest.json").write_text(f'{{"v": "{version}"}}')
        publish_version(store, local, version)
    assert latest_version(store) == "v2"
    assert [(v.version, v.is_latest) for v in list_versions(store)] == [("v1", False), ("v2", True)]
    assert read_manifest(store) == ("v2", {"v": "v2"})
    assert read_manifest(store, "v1") == ("v1", {"v": "v1"})
    with pytest.raises(StoreError, match="no version 'v9'; versions there: v1, v2"):
        read_manifest(store, "v9")


def test_fetch_url_is_a_file_url_another_program_can_read(tmp_path):
    import urllib.request

    store = open_store(tmp_path / "store")
    store.put_bytes("a/model.mar", b"archive")
    url = store.fetch_url("a/model.mar")
    assert url == (tmp_path / "store" / "a" / "model.mar").as_uri()
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"archive"
    with pytest.raises(StoreError, match="a/missing.mar does not exist"):
        store.fetch_url("a/missing.mar")


def test_local_path_is_the_folder_holding_the_objects(tmp_path):
    store = open_store(tmp_path / "store")
    store.put_bytes("a/b.bin", b"hello")
    assert (store.local_path() / "a" / "b.bin").read_bytes() == b"hello"
    assert store.child("a").local_path() == store.local_path() / "a"
    s3 = open_store("s3://bucket/prefix", endpoint="http://127.0.0.1:1", access_key="k", secret_key="s")
    assert s3.local_path() is None
