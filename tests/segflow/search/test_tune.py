"""`segflow tune` end to end: real Ray Tune and NNI searches whose trials are real training runs.

Tiny synthetic data (32x32, 40 images), a 2-level U-Net and 1-2 epochs per trial keep each search
around a minute on two cores. Every trial trains through segflow.train.fit like `segflow train`;
the best trial's checkpoint is published as OUT/model and the report links its figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segflow.config import load_recipe
from segflow.config.loader import with_overrides
from segflow.data import prep
from segflow.errors import ConfigError, SearchError
from segflow.progress import SILENT
from segflow.search.tune import check_fits, check_metric, check_search, tune
from support.signals import assert_ctrl_c_raises_keyboard_interrupt

TINY = ["data.num_images=40", "data.image_size=[32,32]", "training.batch_size=8", "training.num_workers=1",
        "training.cpus_per_worker=1", "model.params={depth: 2, width: 8}", "search.concurrency=2",
        "search.metric=val_miou", "search.mode=max",
        "search.space={lr: {type: loguniform, low: 0.001, high: 0.03}, batch_size: {type: choice, values: [4, 8]}}"]


def tiny(*overrides: str):
    return load_recipe("quickstart", [*TINY, *overrides])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    return prep(tiny(), None, str(tmp_path_factory.mktemp("tune-data")), progress=SILENT).uri


def assert_search_outcome(result, out: Path, trials: int) -> None:
    assert len(result.trials) == trials
    assert not [(t.name, t.error) for t in result.trials if t.status == "ERROR"]
    assert result.best_metric == max(t.best("max") for t in result.trials)
    card = json.loads(next((out / "model").glob("*/manifest.json")).read_text())
    assert card["search"]["params"] == result.best.params
    report = (out / "hyperparameter-optimization.md").read_text()
    for figure in ("search-figures/trials.png", "search-figures/parameters.png", "eval/figures/loss.png",
                   "eval/figures/samples.png", "eval/figures/precision_recall.png"):
        assert f"]({figure})" in report
        assert (out / figure).stat().st_size > 1000, figure
    assert f"Trial `{result.best.name}`" in report
    assert json.loads((out / "search.json").read_text())["best"] == result.best.name


# ---- real searches ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_optuna_with_asha_trains_every_trial_and_promotes_the_best(dataset, tmp_path):
    recipe = tiny("search.backend=ray", "search.algo=optuna", "search.scheduler=asha", "search.trials=4",
                  "search.max_epochs=2")
    result = tune(recipe, str(tmp_path), dataset_uri=dataset, progress=SILENT)
    assert_ctrl_c_raises_keyboard_interrupt()  # Ray Tune's handlers are gone with the search
    assert_search_outcome(result, tmp_path, 4)
    assert all(1 <= len(t.curve) <= 2 for t in result.trials)
    assert "scheduler asha" in (tmp_path / "hyperparameter-optimization.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_bohb_hands_out_budgets_through_its_hyperband(dataset, tmp_path):
    recipe = tiny("search.backend=ray", "search.algo=bohb", "search.trials=4", "search.max_epochs=2")
    result = tune(recipe, str(tmp_path), dataset_uri=dataset, progress=SILENT)
    assert_search_outcome(result, tmp_path, 4)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_nni_tpe_trials_train_and_report_each_epoch(dataset, tmp_path):
    recipe = tiny("search.backend=nni", "search.algo=tpe", "search.trials=4", "search.max_epochs=2")
    result = tune(recipe, str(tmp_path), dataset_uri=dataset, progress=SILENT)
    assert_search_outcome(result, tmp_path, 4)
    assert all(len(t.curve) == 2 and t.status == "SUCCEEDED" for t in result.trials)
    assert result.web_ui and result.web_ui in (tmp_path / "hyperparameter-optimization.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_an_interrupted_ray_search_resumes_without_repeating_finished_trials(dataset, tmp_path):
    """The CLI in a subprocess, interrupted (SIGINT, as Ctrl-C) once a trial has finished."""
    overrides = [*TINY, "search.backend=ray", "search.algo=random", "search.trials=3", "search.concurrency=1",
                 "search.max_epochs=1"]
    command = [sys.executable, "-m", "segflow.cli.main", "tune", "quickstart", "--out", str(tmp_path),
               "--dataset", dataset, *(arg for o in overrides for arg in ("--set", o))]
    trials = tmp_path / "search" / "trials"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 400
    while not list(trials.glob("*/trial.json")):
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no trial finished in 400 s"
        time.sleep(0.2)
    started = len(list(trials.iterdir()))  # the finished trial and at most the next one
    assert started <= 2, f"{started} trials started with search.concurrency=1"
    os.killpg(first.pid, signal.SIGINT)
    output = first.communicate(timeout=120)[0].decode()
    finished = {path.parent.name: path.stat().st_mtime for path in trials.glob("*/trial.json")}
    assert first.returncode == 130 and "interrupted; finished trials are kept" in output, output[-3000:]
    assert not (tmp_path / "hyperparameter-optimization.md").exists(), "the first run was not interrupted"

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    summary = json.loads((tmp_path / "search.json").read_text())
    assert len(summary["trials"]) == 3
    for name, mtime in finished.items():
        assert (trials / name / "trial.json").stat().st_mtime == mtime, f"finished trial {name} ran again"


# ---- bad input: refused before anything runs -------------------------------------------------


def test_unknown_algorithms_list_the_valid_names():
    with pytest.raises(SearchError, match="unknown Ray Tune algorithm 'tpe'.*random, grid, optuna, hyperopt, bohb, "
                                          "asha, hyperband, pbt"):
        check_search(tiny("search.backend=ray", "search.algo=tpe"))
    with pytest.raises(SearchError, match="unknown NNI tuner 'asha'.*tpe, anneal, evolution, smac, hyperband, "
                                          "metis, bohb, gp, dngo"):
        check_search(tiny("search.backend=nni", "search.algo=asha"))


def test_a_parameter_type_the_tuner_cannot_sample_is_refused():
    with pytest.raises(SearchError, match="NNI tuner 'metis' cannot sample search.space.lr of type 'loguniform'"):
        check_search(tiny("search.backend=nni", "search.algo=metis"))
    with pytest.raises(SearchError, match="grid search enumerates choice parameters only; lr"):
        check_search(tiny("search.backend=ray", "search.algo=grid"))


def test_loguniform_needs_a_positive_low():
    with pytest.raises(ConfigError, match="loguniform needs low > 0"):
        tiny("search.space={lr: {type: loguniform, low: 0, high: 0.1}}")


def test_a_metric_training_does_not_report_is_refused():
    with pytest.raises(SearchError, match="search.metric 'val_iou' is not reported.*val_miou"):
        check_metric(tiny("search.metric=val_iou"), num_classes=4)
    with pytest.raises(SearchError, match="'val_top5' is not reported by segmentation training"):
        check_metric(tiny("search.metric=val_top5"), num_classes=4)


def test_a_budget_that_cannot_fit_the_machine_is_refused():
    recipe = tiny("search.concurrency=4", "training.num_workers=2", "training.cpus_per_worker=1")
    with pytest.raises(SearchError, match=r"needs 8 CPUs at once \(search.concurrency 4 x training.num_workers 2 x "
                                          r"training.cpus_per_worker 1\) but there are 2; lower"):
        check_fits(recipe, cpus=2, gpus=0)
    check_fits(with_overrides(recipe, {"training.cpus_per_worker": 0.25}), cpus=2, gpus=0)
    with pytest.raises(SearchError, match="needs 8 GPUs at once"):
        check_fits(with_overrides(recipe, {"training.use_gpu": True, "training.cpus_per_worker": 0.25}), cpus=2, gpus=1)


def test_ray_options_that_do_not_combine_are_refused():
    with pytest.raises(SearchError, match="bohb runs with its own HyperBand scheduler"):
        check_search(tiny("search.backend=ray", "search.algo=bohb", "search.scheduler=asha"))
    with pytest.raises(SearchError, match="PBT mutates the configurations itself"):
        check_search(tiny("search.backend=ray", "search.algo=optuna", "search.scheduler=pbt"))
    with pytest.raises(SearchError, match="search.scheduler is for the Ray backend"):
        check_search(tiny("search.backend=nni", "search.algo=tpe", "search.scheduler=asha"))
