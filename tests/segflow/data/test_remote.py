"""prep from object storage: the raw dataset as distributed, uploaded to a real S3 server (MinIO; moto where
MinIO cannot be built, see tests/support/s3server.py), read through s3:// and minio:// URIs.

The fixture is a tiny Dubai-aerial dataset in its distributed layout (`Semantic segmentation
dataset/Tile N/{images,masks}` plus `classes.json`, keys with spaces), uploaded object by object
as `mc cp --recursive` does: no segflow metadata on the objects.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from minio.credentials import StaticProvider
from minio.minioadmin import MinioAdmin

from segflow.config import recipe_to_yaml
from segflow.data import open_dataset, prep
from segflow.errors import DataError, StoreError
from segflow.progress import SILENT
from support.raw_data import aerial_recipe, s3_client, upload_folder, write_aerial

PREFIX = "datasets/aerial"


def cache_files(cache: Path) -> dict[str, tuple[int, int]]:
    """Every file in the raw-data cache -> (inode, mtime in ns): a download would replace it."""
    return {p.relative_to(cache).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted((cache / "raw").rglob("*")) if p.is_file()}


@pytest.fixture
def aerial(tmp_path, s3_env, bucket, monkeypatch) -> Path:
    """The raw folder on disk and the same files in BUCKET/datasets/aerial; the cache in tmp_path/cache."""
    monkeypatch.setenv("SEGFLOW_CACHE", str(tmp_path / "cache"))
    raw = write_aerial(tmp_path / "aerial")
    upload_folder(s3_env, raw, bucket, PREFIX)
    return raw


def test_prep_from_s3_equals_prep_of_the_local_folder(aerial, bucket, tmp_path):
    local = prep(aerial_recipe(), aerial, str(tmp_path / "from-local"), progress=SILENT)
    remote = prep(aerial_recipe(), f"s3://{bucket}/{PREFIX}/", str(tmp_path / "from-s3"), progress=SILENT)
    assert remote.version == local.version and not remote.reused
    assert remote.manifest.sources == local.manifest.sources
    assert "Semantic segmentation dataset/Tile 2/masks/image_part_003.png" in remote.manifest.sources
    assert remote.manifest.source_root == f"s3://{bucket}/{PREFIX}"
    assert local.manifest.source_root == str(aerial)
    ours, theirs = open_dataset(str(tmp_path / "from-s3")), open_dataset(str(tmp_path / "from-local"))
    for split in ("train", "val"):
        for a, b in zip(ours.arrays(split), theirs.arrays(split), strict=True):
            assert a.shape[0] > 0 and np.array_equal(a, b)
    cached = cache_files(tmp_path / "cache")
    assert len(cached) == 13  # 2 tiles x 3 (image, mask) pairs + classes.json
    again = prep(aerial_recipe(), f"minio://{bucket}/{PREFIX}", str(tmp_path / "from-s3"), progress=SILENT)
    assert again.reused and again.version == local.version
    assert cache_files(tmp_path / "cache") == cached


def list_only_user(server, bucket: str) -> tuple[str, str]:
    """A MinIO user allowed to list BUCKET and nothing else: any object download (GET or HEAD) is refused."""
    admin = MinioAdmin(endpoint=server.address, credentials=StaticProvider(server.access_key, server.secret_key),
                       secure=False)
    name, secret = f"lister-{bucket}"[:60], "lister-secret-123"
    admin.policy_add(name, policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [f"arn:aws:s3:::{bucket}"]}]})
    admin.user_add(name, secret)
    admin.attach_policy([name], user=name)
    return name, secret


def test_second_prep_of_the_same_objects_downloads_nothing(minio_server, aerial, bucket, tmp_path, monkeypatch):
    """The second prep runs with credentials that can list but not read objects: it passes only if it downloads
    nothing. Then one new object under the prefix must be downloaded, is refused, and leaves no cache entry."""
    uri = f"s3://{bucket}/{PREFIX}"
    first = prep(aerial_recipe(), uri, str(tmp_path / "a"), progress=SILENT)
    cached = cache_files(tmp_path / "cache")
    key, secret = list_only_user(minio_server, bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    second = prep(aerial_recipe(), uri, str(tmp_path / "b"), progress=SILENT)
    assert second.version == first.version and not second.reused
    assert cache_files(tmp_path / "cache") == cached

    extra = aerial / "Semantic segmentation dataset" / "Tile 1" / "images" / "notes.txt"
    extra.write_text("a new object changes the listing")
    s3_client(minio_server).fput_object(bucket, f"{PREFIX}/Semantic segmentation dataset/Tile 1/images/notes.txt",
                                     str(extra))
    with pytest.raises(StoreError, match="refused the credentials .*check AWS_ACCESS_KEY_ID"):
        prep(aerial_recipe(), uri, str(tmp_path / "c"), progress=SILENT)
    assert cache_files(tmp_path / "cache") == cached
    assert sorted(p.name for p in (tmp_path / "cache" / "raw").iterdir()) == sorted({k.split("/")[1] for k in cached})


def test_wrong_credentials_name_the_variables(minio_server, aerial, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreError, match="refused the credentials .*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        prep(aerial_recipe(), f"s3://{bucket}/{PREFIX}", str(tmp_path / "out"), progress=SILENT)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("where", "error", "message"), [
    ("s3://{bucket}/datasets/nothing-here", DataError, r"holds no objects; upload the dataset folder .*mc cp"),
    ("s3://{bucket}/datasets/aeria", DataError, "holds no objects"),  # a sibling's prefix is not a folder
    ("s3://no-such-bucket-segflow/datasets/aerial", StoreError, r"bucket 'no-such-bucket-segflow' does not exist"
                                                                r".*create it"),
    ("s3://{bucket}/{prefix}", StoreError, "no S3 endpoint configured: set SEGFLOW_S3_ENDPOINT"),
])
def test_bad_locations_say_what_to_fix_and_leave_nothing(aerial, bucket, tmp_path, monkeypatch, where, error,
                                                         message):
    if "endpoint" in message:
        monkeypatch.delenv("SEGFLOW_S3_ENDPOINT")
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(error, match=message):
        prep(aerial_recipe(), where.format(bucket=bucket, prefix=PREFIX), str(tmp_path / "out"), progress=SILENT)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_cli_prep_reads_s3_and_says_so(aerial, bucket, tmp_path):
    recipe_file = tmp_path / "aerial-t.yaml"
    recipe_file.write_text(recipe_to_yaml(aerial_recipe()))
    segflow = str(Path(sys.executable).parent / "segflow")
    run = subprocess.run([segflow, "prep", str(recipe_file), "--data", f"s3://{bucket}/{PREFIX}", "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr
    assert "written" in run.stdout
    assert open_dataset(str(tmp_path / "out")).manifest.source_root == f"s3://{bucket}/{PREFIX}"
    no_endpoint = {k: v for k, v in os.environ.items() if k not in ("SEGFLOW_S3_ENDPOINT", "AWS_ENDPOINT_URL")}
    refused = subprocess.run([segflow, "prep", str(recipe_file), "--data", f"s3://{bucket}/{PREFIX}", "--out",
                              str(tmp_path / "out2")], capture_output=True, text=True, timeout=300, env=no_endpoint)
    assert refused.returncode == 1 and "set SEGFLOW_S3_ENDPOINT" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.realdata
def test_real_aerial_tiles_from_s3_equal_the_local_prep(real_dataset, s3_env, bucket, tmp_path, monkeypatch):
    """Three real Dubai tiles (the shared dataset's Tile 1, 001-003, files as distributed) through s3:// and locally."""
    monkeypatch.setenv("SEGFLOW_CACHE", str(tmp_path / "cache"))
    source = real_dataset("dubai_aerial") / "Semantic segmentation dataset" / "Tile 1"
    tile = tmp_path / "aerial" / "Semantic segmentation dataset" / "Tile 1"
    for folder, suffix in (("images", "jpg"), ("masks", "png")):
        (tile / folder).mkdir(parents=True)
        for part in (1, 2, 3):
            name = f"image_part_{part:03d}.{suffix}"
            (tile / folder / name).write_bytes((source / folder / name).read_bytes())
    upload_folder(s3_env, tmp_path / "aerial", bucket, PREFIX)
    recipe = aerial_recipe()
    local = prep(recipe, tmp_path / "aerial", str(tmp_path / "from-local"), progress=SILENT)
    remote = prep(recipe, f"s3://{bucket}/{PREFIX}", str(tmp_path / "from-s3"), progress=SILENT)
    assert remote.version == local.version and remote.manifest.sources == local.manifest.sources
    assert remote.manifest.splits["train"].samples > 0
    assert remote.manifest.ignored_colours == local.manifest.ignored_colours
