"""`segflow deploy` against a real TorchServe: a new version goes live without a restart.

One TorchServe (serving/server.py's `TorchServe`, free loopback ports) starts serving version 1
of a tiny model. Version 2 (other weights) is deployed from a local archive (staged as a file://
URL) and version 3 from S3 (a real S3 server: MinIO, staged as a presigned URL, the cluster path);
after each, /predictions/tiny answers with the new weights, pixel for pixel, from the same
TorchServe process. Deploying version 1 again is a rollback: no new registration, only the
default moves. Then the errors: server down, wrong key, an archive TorchServe refuses, an
archive changed after packaging.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from segflow.errors import SegflowError, ServingError
from segflow.models.artifact import save_model
from segflow.serving.archive import package
from segflow.serving.cli import register
from segflow.serving.client import InferenceClient
from segflow.serving.deploy import default_staging_uri, deploy, helm_command
from segflow.serving.management import ManagementClient
from segflow.serving.server import TorchServe
from support.real import unavailable
from support.serving import encode, noise, reference_mask, tiny_segmenter

pytestmark = pytest.mark.slow
SERVING = {"batch_size": 1, "max_batch_delay_ms": 1}
IMAGE = noise(48, 56, seed=3)


def _archive(root: Path, seed: int, out: str | None = None):
    """Version `seed` of the tiny model (its own weights), packaged; returns (archive, reference mask)."""
    model, config = tiny_segmenter(seed)
    uri = str(root / f"v{seed}" / "model")
    save_model(uri, model, config, {"recipe": {"name": "tiny", "serving": SERVING}}, [])
    return package(uri, out), reference_mask(model, config, IMAGE)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if shutil.which("java") is None:
        unavailable("TorchServe needs Java 17 (apt-get install -y openjdk-17-jre-headless); none on PATH")
    root = tmp_path_factory.mktemp("deploy")
    first, expected = _archive(root, seed=1)
    mar = Path(first.uri) / first.version / first.manifest["mar"]
    with TorchServe(mar, "tiny", root / "ts") as served:
        yield served, root, first, expected


def _served_mask(served: TorchServe) -> np.ndarray:
    with InferenceClient(served.endpoints.predictions, served.key()) as client:
        answer = client.predict(encode(IMAGE, "PNG"), "mask")
    return np.asarray(Image.open(io.BytesIO(answer.body)))


def _frontend_pid(served: TorchServe) -> int:
    return int((served.run_dir / "tmp" / ".model_server.pid").read_text().split()[0])


def test_new_versions_go_live_without_a_restart_and_roll_back(server, s3_env, bucket):
    served, root, first, first_mask = server
    management, key = served.endpoints.management, served.key("management")
    pid = _frontend_pid(served)
    assert np.array_equal(_served_mask(served), first_mask)

    second, second_mask = _archive(root, seed=2)
    assert not np.array_equal(second_mask, first_mask), "the two versions must answer differently to show the switch"
    done = deploy(second.uri, management, key, str(root / "staging"))
    assert done.registered and done.previous == first.manifest["model"]["version"]
    assert done.version == second.manifest["model"]["version"]
    assert np.array_equal(_served_mask(served), second_mask)

    third, third_mask = _archive(root, seed=3, out=f"s3://{bucket}/tiny/archive")
    done = deploy(third.uri, management, key, f"s3://{bucket}/tiny/deploy")
    assert done.registered and done.previous == second.manifest["model"]["version"]
    assert np.array_equal(_served_mask(served), third_mask)

    result = CliRunner().invoke(_cli(), ["deploy", first.uri, "--management", management,
                                         "--key-file", str(served.run_dir / "key_file.json")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "already registered; made the default" in result.output
    assert np.array_equal(_served_mask(served), first_mask)

    versions = ManagementClient(management, key).versions("tiny")
    assert {v.version for v in versions} == {a.manifest["model"]["version"] for a in (first, second, third)}
    assert all(v.ready_workers == 1 for v in versions)
    assert served.running and _frontend_pid(served) == pid  # one TorchServe process throughout


def _cli() -> typer.Typer:
    """The serving commands (deploy among them) as `segflow` registers them."""
    cli = typer.Typer()
    register(cli)
    return cli


def test_without_a_management_url_the_cli_prints_the_helm_upgrade(server):
    _, _, first, _ = server
    result = CliRunner().invoke(_cli(), ["deploy", first.uri], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert helm_command(first.uri, first.version) in result.output.replace("\n", "")
    assert "--set model.archiveUri=" in helm_command(first.uri, first.version)


def test_a_server_that_is_down_is_named(closed_port):
    with pytest.raises(ServingError, match=rf"cannot reach TorchServe's management API at http://127.0.0.1:{closed_port}"
                                           r".*is TorchServe running"):
        ManagementClient(f"http://127.0.0.1:{closed_port}", "key").versions("tiny")


def test_the_inference_key_does_not_manage(server, tmp_path):
    served, _, first, _ = server
    for key in (served.key("inference"), "wrong", None):
        with pytest.raises(ServingError, match=r"refused the key .*400 \(not 401\).*\*management\* key"):
            deploy(first.uri, served.endpoints.management, key, str(tmp_path))


def test_an_archive_torchserve_cannot_load_is_refused_with_its_reason(server, tmp_path):
    served, _, _, _ = server
    junk = tmp_path / "junk-1.mar"
    with zipfile.ZipFile(junk, "w") as zipped:
        zipped.writestr("README", "a zip without MAR-INF/MANIFEST.json")
    client = ManagementClient(served.endpoints.management, served.key("management"))
    with pytest.raises(ServingError, match=r"TorchServe at .* refused to register .*junk-1.mar: 4\d\d"):
        client.register(junk.as_uri())
    assert {v.version for v in client.versions("tiny")}  # the served model is untouched


def test_an_archive_changed_after_packaging_is_not_deployed(server, tmp_path):
    served, root, _, _ = server
    archive, _ = _archive(tmp_path, seed=4)
    mar = Path(archive.uri) / archive.version / archive.manifest["mar"]
    mar.write_bytes(mar.read_bytes() + b"tampered")
    client = ManagementClient(served.endpoints.management, served.key("management"))
    before = {v.version for v in client.versions("tiny")}
    with pytest.raises(SegflowError, match=r"tiny.mar is corrupt: its sha256 is \w+, but \w+ was recorded"):
        deploy(archive.uri, served.endpoints.management, served.key("management"), str(tmp_path / "staging"))
    assert {v.version for v in client.versions("tiny")} == before


@pytest.mark.parametrize(("archive", "staging"), [
    ("runs/x/archive", "runs/x/deploy"), ("s3://bucket/runs/x/archive/", "s3://bucket/runs/x/deploy"),
    ("s3://bucket", "s3://bucket/deploy"), ("archive", "deploy")])
def test_the_staging_folder_sits_beside_the_archive(archive, staging):
    assert default_staging_uri(archive) == staging
