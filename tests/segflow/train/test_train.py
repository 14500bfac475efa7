"""Training on a real local Ray cluster: DDP on gloo, checkpoints, failures, resume, reports.

Tiny synthetic data keeps each run to seconds of compute; Ray's worker start-up dominates.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from PIL import Image

from segflow.config import load_recipe
from segflow.data import open_dataset, prep
from segflow.errors import ConfigError, ModelError, TrainError
from segflow.progress import SILENT
from segflow.train import fit, make_job, train
from support.signals import assert_ctrl_c_raises_keyboard_interrupt

pytestmark = pytest.mark.slow

TINY = ["data.num_images=40", "data.image_size=[32,32]", "training.epochs=2", "training.batch_size=8",
        "model.params={depth: 2, width: 8}"]


def tiny(*extra):
    return load_recipe("quickstart", [*TINY, *extra])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "quick"
    return prep(tiny(), None, str(out), progress=SILENT).uri


def train_worker_pids() -> set[int]:
    """Ray Train workers of this test process's own Ray cluster (its raylet is our child), not of
    other Ray jobs on the machine."""
    ours = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if (any("RayTrainWorker" in part for part in process.info["cmdline"] or [])
                    and any(parent.pid == os.getpid() for parent in process.parents())):
                ours.add(process.info["pid"])
        except psutil.NoSuchProcess:
            continue
    return ours


def registered_checkpoints(run: Path) -> list[str]:
    """Checkpoints Ray's controller has committed, latest last (a file on disk may still be uploading)."""
    snapshot = run / "ray" / "checkpoint_manager_snapshot.json"
    try:
        state = json.loads(snapshot.read_text())
        names = [c["checkpoint_dir_name"] for c in state["checkpoint_results"]]
        latest = state["latest_checkpoint_result"]["checkpoint_dir_name"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return []
    return [n for n in names if n != latest] + [latest]


def checkpoints(run: Path) -> list[Path]:
    return sorted((run / "ray").glob("checkpoint_*/state.pt"))


def test_two_worker_ddp_run_writes_model_metrics_figures_and_report(dataset, tmp_path):
    outcome = train(tiny(), str(tmp_path / "run"), dataset_uri=dataset, progress=SILENT)
    assert_ctrl_c_raises_keyboard_interrupt()  # Ray Train's handler (fit ran on this thread) is gone
    run = tmp_path / "run"
    assert [r["epoch"] for r in outcome.fit.history] == [1, 2]
    version = run / "model" / outcome.model_version
    card = json.loads((version / "manifest.json").read_text())
    assert card["training"]["workers"] == 2 and card["dataset"]["uri"] == dataset
    assert card["parameters"] > 0 and card["size_bytes"] > 0 and card["cpu_latency_ms"]["p50"] > 0
    assert 0 <= card["metrics"]["miou"] <= 1
    state = torch.load(version / "model.pt", weights_only=True)
    assert "head.weight" in state
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"precision", "recall", "f1", "iou"}
    for name in ("samples", "loss", "metric", "precision_recall", "confusion"):
        with Image.open(run / "eval" / "figures" / f"{name}.png") as img:
            assert img.width > 200 and img.height > 200
            assert len(set(img.convert("L").getdata())) > 10  # not a blank canvas
    report = (run / "eval" / "report.md").read_text()
    assert "mean IoU" in report and "figures/samples.png" in report and "| epoch |" in report


def test_a_killed_worker_does_not_lose_the_run(dataset, tmp_path):
    run = tmp_path / "run"
    recipe = tiny("training.epochs=4", "training.max_failures=2", "training.num_workers=2")
    killed = []
    earlier = train_worker_pids()  # idle workers of earlier runs may still be shutting down

    def kill_a_worker_after_first_checkpoint():
        deadline = time.monotonic() + 240
        while not registered_checkpoints(run) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in train_worker_pids() - earlier:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return

    killer = threading.Thread(target=kill_a_worker_after_first_checkpoint)
    killer.start()
    outcome = train(recipe, str(run), dataset_uri=dataset, progress=SILENT)
    killer.join()
    assert killed, "no Ray Train worker process was found to kill"
    assert [r["epoch"] for r in outcome.fit.history] == [1, 2, 3, 4]
    assert any(r["resumed"] for r in outcome.fit.history), "the run restarted from scratch"


def test_stopped_run_resumes_at_the_next_epoch(dataset, tmp_path):
    run = tmp_path / "run"
    args = [str(Path(sys.executable).parent / "segflow"), "train", "quickstart", "--out", str(run),
            "--dataset", dataset, *[a for t in TINY for a in ("--set", t)], "--set", "training.epochs=8",
            "--set", "training.num_workers=1", "--set", "training.cpus_per_worker=1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not registered_checkpoints(run) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again to resume" in stderr
    first = json.loads((run / "ray" / registered_checkpoints(run)[-1] / "history.json").read_text())
    assert len(first) < 8, "the run finished before it could be stopped"
    outcome = train(tiny("training.epochs=8", "training.num_workers=1", "training.cpus_per_worker=1"),
                    str(run), dataset_uri=dataset, progress=SILENT)
    history = outcome.fit.history
    assert [r["epoch"] for r in history] == list(range(1, 9))
    assert history[: len(first)] == first  # the epochs before the stop were not trained again
    assert history[len(first)]["resumed"]


def test_a_run_started_from_another_runs_checkpoint_trains_only_the_epochs_after_it(dataset, tmp_path):
    """What a search does when its scheduler resumes a paused trial (HyperBand, BOHB) or PBT clones one."""
    data = open_dataset(dataset)
    first = fit(make_job(tiny("training.epochs=1"), data, str(tmp_path)), str(tmp_path), name="first",
                progress=SILENT)
    second = fit(make_job(tiny("training.epochs=2"), data, str(tmp_path)), str(tmp_path), name="second",
                 progress=SILENT, resume_from=first.best_checkpoint)
    assert [r["epoch"] for r in second.history] == [1, 2]
    assert second.history[0] == first.history[0]  # carried over, not trained again
    assert second.history[1]["resumed"]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny("training.epochs=1"), str(run), dataset_uri=dataset, progress=SILENT)
    good = checkpoints(run)
    broken = tiny("training.epochs=2", "training.class_weights=[.nan, 1, 1, 1]")
    with pytest.raises(TrainError, match=r"NaN/inf in epoch 2.*last good checkpoint \(epoch 1\)"):
        train(broken, str(run), dataset_uri=dataset, progress=SILENT)
    assert checkpoints(run) == good
    state = torch.load(good[-1], weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_checkpoints_of_another_model_are_refused(dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny("training.epochs=1"), str(run), dataset_uri=dataset, progress=SILENT)
    with pytest.raises(ModelError, match="holds checkpoints of another model.*params.*--fresh"):
        train(tiny("model.params={depth: 2, width: 4}"), str(run), dataset_uri=dataset, progress=SILENT)


def test_input_channels_must_match_the_data(dataset, tmp_path):
    with pytest.raises(ConfigError, match="model.in_channels is 1 but the dataset's images have 3"):
        train(tiny("model.in_channels=1"), str(tmp_path), dataset_uri=dataset, progress=SILENT)


def test_a_monitor_training_does_not_report_is_refused_before_ray_starts(dataset, tmp_path):
    with pytest.raises(ConfigError, match="training.monitor 'val_top5' is not a metric training reports; use one "
                                          "of: train_loss, val_loss, val_accuracy, val_miou"):
        train(tiny("training.monitor=val_top5"), str(tmp_path), dataset_uri=dataset, progress=SILENT)
    assert not (tmp_path / "ray").exists()


def test_profile_writes_a_trace_and_top_operators(tmp_path):
    recipe = tiny("data.num_images=80", "training.epochs=1", "training.num_workers=1", "training.cpus_per_worker=1")
    train(recipe, str(tmp_path / "run"), profile_steps=3, progress=SILENT)
    profile = tmp_path / "run" / "profile"
    assert (profile / "trace.json").stat().st_size > 1000
    assert "convolution" in (profile / "top_operators.md").read_text()
