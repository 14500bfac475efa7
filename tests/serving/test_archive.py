"""Packaging and the checks before serving: what a .mar holds, its sha256 in the manifest, a
tampered archive refused, weights that are not a plain state dict refused (no unpickling)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from segflow.errors import ModelError, ServingError
from segflow.models.artifact import load_model_dir
from segflow.serving.archive import default_archive_uri, package, resolve_archive
from segflow.store import open_store, sha256_file
from support.serving import save_tiny_segmenter

SEGFLOW = str(Path(sys.executable).parent / "segflow")
SERVING = {"batch_size": 4, "max_batch_delay_ms": 20, "max_pixels": 500_000}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    save_tiny_segmenter(str(root / "run" / "model"), SERVING)
    return package(str(root / "run" / "model"))


def test_archive_is_published_beside_the_model_with_its_sha256(archive):
    assert archive.uri.endswith("/run/archive")
    mar = Path(archive.uri) / archive.version / "tiny.mar"
    assert archive.manifest["mar_sha256"] == sha256_file(mar) and archive.version == archive.manifest["mar_sha256"][:16]
    assert archive.manifest["serving"]["batch_size"] == 4 and archive.manifest["model"]["weights_sha256"]
    with zipfile.ZipFile(mar) as zipped:
        names = set(zipped.namelist())
        settings = yaml.safe_load(zipped.read("model_config.yaml"))
        legend = json.loads(zipped.read("palette.json"))
    assert {"torchserve_entry.py", "model.pt", "model.json", "manifest.json", "palette.json", "MAR-INF/MANIFEST.json"} <= names
    assert (settings["batchSize"], settings["maxBatchDelay"], settings["segflow"]["max_pixels"]) == (4, 20, 500_000)
    assert legend["classes"][1] == {"index": 1, "name": "square", "colour": "#FF0000"}


def test_default_archive_uri_is_a_sibling():
    assert default_archive_uri("runs/x/model") == "runs/x/archive"
    assert default_archive_uri("s3://bucket/runs/x/model/") == "s3://bucket/runs/x/archive"


def test_a_tampered_archive_is_refused(archive, tmp_path):
    copy = str(shutil.copytree(archive.uri, tmp_path / "archive"))
    store = open_store(copy)
    key = f"{archive.version}/tiny.mar"
    evil = tmp_path / "evil.mar"
    evil.write_bytes(store.get_bytes(key) + b"appended")
    store.put_file(key, evil)  # through the store, so its own per-object checksum agrees
    with pytest.raises(ServingError, match="changed after packaging; refusing to serve it"):
        resolve_archive(copy, tmp_path / "model-store")
    assert not (tmp_path / "model-store" / "tiny.mar").exists()
    result = subprocess.run([SEGFLOW, "serve", copy, "--run-dir", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 1 and "changed after packaging" in result.stderr, result.stderr


def test_a_mar_without_its_manifest_is_refused(archive, tmp_path):
    loose = tmp_path / "tiny.mar"
    loose.write_bytes(b"PK")
    with pytest.raises(ServingError, match="no manifest.json beside it"):
        resolve_archive(str(loose), tmp_path)


def test_weights_that_need_unpickling_are_refused(archive, tmp_path):
    folder = tmp_path / "model"
    with zipfile.ZipFile(Path(archive.uri) / archive.version / "tiny.mar") as zipped:
        zipped.extractall(folder)
    torch.save({"weights": torch.zeros(1), "payload": Path("/etc/passwd")}, folder / "model.pt")
    with pytest.raises(ModelError, match="not a plain state dict"):
        load_model_dir(folder)


def test_cli_package_writes_a_new_archive(archive, tmp_path):
    model_uri = str(Path(archive.uri).parent / "model")
    result = subprocess.run([SEGFLOW, "package", model_uri, "--out", str(tmp_path / "out"), "--name", "renamed"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "renamed.mar: sha256" in result.stdout
    assert list((tmp_path / "out").glob("*/renamed.mar"))


def test_serving_a_model_uri_packages_it_once(tmp_path):
    model_uri = str(tmp_path / "run" / "model")
    save_tiny_segmenter(model_uri, SERVING)
    mar, manifest = resolve_archive(model_uri, tmp_path / "first")
    assert mar.name == "tiny.mar" and (tmp_path / "run" / "archive" / manifest["mar_sha256"][:16]).is_dir()
    _, again = resolve_archive(model_uri, tmp_path / "second")  # the same weights: the same archive
    assert again["mar_sha256"] == manifest["mar_sha256"]
