"""`python -m segflow.serving.fetch`, the chart's init container: a verified .mar, or a clear refusal.

It must only read (a model URI is refused, not packaged into the bucket), honour a pinned
ARCHIVE_URI/VERSION, and refuse an archive whose model name differs from the chart's, leaving
nothing in the model store for TorchServe to load. From S3 it runs here with read-only MinIO keys, and as the
chart's init container on a real node in tests/charts/test_cluster.py.
"""

import os
import subprocess
import sys

import pytest

from segflow.errors import ServingError
from segflow.serving.archive import fetch_archive, package
from segflow.store import sha256_file
from support.s3server import read_only_user
from support.serving import save_tiny_segmenter


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("fetch")
    save_tiny_segmenter(str(root / "run" / "model"), {"batch_size": 2})
    return package(str(root / "run" / "model"))


def test_the_latest_and_a_pinned_version_are_fetched_verified(archive, tmp_path):
    for source in (archive.uri, f"{archive.uri}/{archive.version}"):
        mar, manifest = fetch_archive(source, tmp_path / source.rsplit("/", 1)[1])
        assert mar.name == "tiny.mar" and sha256_file(mar) == manifest["mar_sha256"] == archive.manifest["mar_sha256"]


def test_a_model_uri_is_refused_not_packaged(archive, tmp_path):
    model_uri = archive.uri.rsplit("/", 1)[0] + "/model"
    with pytest.raises(ServingError, match="is not an archive artifact"):
        fetch_archive(model_uri, tmp_path)
    assert not list(tmp_path.iterdir())


def test_an_archive_under_another_name_is_refused_and_removed(archive, tmp_path):
    store = tmp_path / "models"
    command = [sys.executable, "-m", "segflow.serving.fetch", archive.uri, "--model-store", str(store)]
    refused = subprocess.run([*command, "--name", "quickstart"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "COLUMNS": "200"})
    assert refused.returncode == 1 and "packages model 'tiny', not 'quickstart'" in refused.stderr, refused.stderr
    assert not list(store.iterdir())  # the accepted case runs as the init container in tests/charts


def test_the_init_container_fetches_from_minio_with_read_only_keys(minio_server, s3_env, bucket, archive, tmp_path):
    """As the chart runs it: `python -m segflow.serving.fetch` with the Secret's keys, here those of a reader."""
    published = package(archive.uri.rsplit("/", 1)[0] + "/model", f"s3://{bucket}/tiny/archive")
    access_key, secret_key = read_only_user(minio_server, bucket)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key, "COLUMNS": "200"}
    store = tmp_path / "models"
    fetched = subprocess.run([sys.executable, "-m", "segflow.serving.fetch", published.uri, "--model-store", str(store),
                              "--name", "tiny"], capture_output=True, text=True, timeout=120, env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert "sha256" in fetched.stdout and "verified" in fetched.stdout
    assert sha256_file(store / "tiny.mar") == published.manifest["mar_sha256"]
