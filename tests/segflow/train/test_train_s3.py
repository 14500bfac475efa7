"""`segflow train` with everything in MinIO: dataset, Ray Train checkpoints, model and report.

Runs the CLI in its own process, as a user does, so Ray's workers start with the S3 credentials
in their environment (the workers write the checkpoints). A second run on the same --out resumes
from the checkpoints in the bucket. It needs MinIO: on moto's S3 server, pyarrow's upload of
Ray's empty storage marker fails (CompleteMultipartUpload: AWS Error INTERNAL_FAILURE).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segflow.config import load_recipe
from segflow.data import prep
from segflow.progress import SILENT
from segflow.store import open_store

pytestmark = pytest.mark.slow

TINY = ["data.num_images=24", "data.image_size=[32,32]", "training.batch_size=8", "model.params={depth: 2, width: 8}",
        "training.num_workers=1", "training.cpus_per_worker=1"]


def segflow_train(out: str, dataset: str, epochs: int, env: dict[str, str]) -> None:
    args = [str(Path(sys.executable).parent / "segflow"), "train", "quickstart", "--out", out, "--dataset", dataset,
            *[a for t in [*TINY, f"training.epochs={epochs}"] for a in ("--set", t)]]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def latest_history(store) -> list[dict]:
    """The epochs recorded in the checkpoint Ray's controller registered last."""
    snapshot = json.loads(store.get_text("ray/checkpoint_manager_snapshot.json"))
    latest = snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
    return json.loads(store.get_text(f"ray/{latest}/history.json"))


def test_checkpoints_and_model_go_to_s3_and_a_second_run_resumes_from_them(minio_server, s3_env, bucket, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("SEGFLOW_CACHE", str(tmp_path / "cache"))
    dataset = f"s3://{bucket}/datasets/quick"
    prep(load_recipe("quickstart", TINY), None, dataset, progress=SILENT)
    out = f"s3://{bucket}/runs/quick"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    segflow_train(out, dataset, 1, env)
    store = open_store(out)
    keys = [o.key for o in store.list()]
    assert any(k.startswith("ray/checkpoint_") and k.endswith("/state.pt") for k in keys), keys
    assert any(k.startswith("model/") and k.endswith("/model.pt") for k in keys) and "eval/metrics.json" in keys
    first = latest_history(store)
    assert [r["epoch"] for r in first] == [1]

    segflow_train(out, dataset, 2, env)
    history = latest_history(store)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0] == first[0] and history[1]["resumed"]  # epoch 1 came from the bucket, not trained again
