"""`segflow run` executes the whole train_and_serve pipeline through kfp.local, for real, once.

The one run (a tiny quickstart) also takes the distillation branch and ends with --serve-once, so
the same training shows the student trained and evaluated, the quality-gated deploy step
emitting its `helm upgrade`, and a local TorchServe answering one validation image, then stopping.
A second run takes the other branch before training: --tune searches first and train uses the
best trial's values.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TINY = ["data.num_images=48", "data.image_size=[32,32]", "training.epochs=1", "training.batch_size=8",
        "model.params={depth: 2, width: 8}"]
STUDENT = "unet:depth=1,width=4"


def segflow_run(root: Path, *options: str) -> tuple[Path, str]:
    """`segflow run quickstart` on the tiny settings with `options`: (the pipeline run's folder, stdout)."""
    args = [str(Path(sys.executable).parent / "segflow"), "run", "quickstart", "--run-dir", str(root), *options,
            *[a for t in TINY for a in ("--set", t)]]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0, _failure(result)
    (run,) = (root / "pipeline").iterdir()
    return run, result.stdout


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    run, stdout = segflow_run(root, "--distill", STUDENT, "--serve-once")
    return run, stdout, root


def _failure(result: subprocess.CompletedProcess) -> str:
    """The failed task's traceback (kfp.local prints it after pages of executor JSON), then stderr's end."""
    start = result.stdout.rfind("Traceback (most recent call last)")
    return (result.stdout[start:start + 4000] if start >= 0 else result.stdout[-3000:]) + result.stderr[-2000:]


def test_segflow_run_quickstart_produces_model_metrics_report(local_run):
    run, stdout, _ = local_run
    assert "pipeline finished" in stdout and "metric: miou" in stdout
    model = next((run / "train" / "run" / "model").glob("*/model.pt"))
    assert model.stat().st_size > 0
    assert (run / "train" / "run" / "eval" / "report.md").read_text().startswith("# quickstart")
    html = (run / "train" / "report").read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html
    assert (run / "evaluate" / "report").is_file()
    assert "TorchServe archive" in stdout
    mar = next((run / "package" / "archive").glob("*/quickstart.mar"))
    assert mar.stat().st_size > 0


def test_without_tune_training_keeps_the_recipes_hyperparameters(local_run):
    run, _, _ = local_run
    assert not (run / "tune").exists()
    kept = json.loads((run / "recipe-hyperparameters" / "executor_output.json").read_text())
    assert kept["parameterValues"]["Output"] == "{}"


def test_tune_searches_first_and_train_uses_the_best_trials_values(tmp_path):
    run, stdout = segflow_run(tmp_path, "--tune", "--set", "search.trials=2", "--set", "search.max_epochs=1",
                              "--set", "search.algo=random")
    best = json.loads(json.loads((run / "tune" / "executor_output.json").read_text())["parameterValues"]["Output"])
    assert set(best) == {"training.lr", "training.batch_size"}
    assert not (run / "recipe-hyperparameters").exists()
    card = json.loads(next((run / "train" / "run" / "model").glob("*/manifest.json")).read_text())
    assert card["recipe"]["training"]["lr"] == best["training.lr"]
    assert card["recipe"]["training"]["batch_size"] == best["training.batch_size"]
    assert "ray / random, best trial" in stdout and "TorchServe archive" in stdout


def test_the_distillation_branch_trains_and_evaluates_the_student(local_run):
    run, stdout, _ = local_run
    card = json.loads(next((run / "distill" / "run" / "model").glob("*/manifest.json")).read_text())
    assert card["teacher"].startswith(str(run / "train" / "run" / "model"))
    html = (run / "distill" / "report").read_text()
    assert "Knowledge distillation: quickstart" in html and "<table>" in html
    student_evaluation = [p for p in run.iterdir() if p.name.startswith("evaluate-")]
    assert len(student_evaluation) == 1 and (student_evaluation[0] / "report").is_file()
    assert "student metric: miou" in stdout and STUDENT in stdout


def test_the_gated_deploy_step_emits_the_helm_upgrade(local_run):
    run, stdout, _ = local_run
    release = json.loads((run / "deploy" / "release" / "release.json").read_text())
    archive = run / "package" / "archive"
    assert release["mode"] == "helm" and release["archive_uri"] == str(archive)
    assert release["helm_command"].startswith("helm upgrade segflow charts/segflow -n segflow --reuse-values")
    assert f"model.archiveUri={archive}" in release["helm_command"]
    assert release["helm_command"] in " ".join(stdout.split())


def test_serve_once_answers_a_validation_image_then_stops(local_run):
    _, stdout, root = local_run
    assert "predictions: http://127.0.0.1:" in stdout and "management:  http://127.0.0.1:" in stdout
    assert "served prediction of validation image 0 (32x32)" in stdout and "fraction in the true mask" in stdout
    assert stdout.rstrip().endswith("stopped")
    leftovers = [pid for pid in _pids() if str(root / "serve") in _cmdline(pid)]
    assert leftovers == [], [_cmdline(pid) for pid in leftovers]


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
