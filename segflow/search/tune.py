"""`segflow tune`: search the recipe's space with Ray Tune or NNI, then promote the best trial.

    OUT/dataset/                      the prepared dataset (from raw data or the synthetic set)
    OUT/search/                       the backend's experiment (WORK; local even when OUT is s3://)
        trials/<trial id>/            each trial's Ray Train run and trial.json
        tune/ | nni/<experiment id>/  Ray Tune's experiment (resumable) or NNI's
    OUT/model/, OUT/eval/             the best trial's best epoch, published like `segflow train`
    OUT/search.json                   every trial: parameters, metric per epoch, status
    OUT/hyperparameter-optimization.md  the report, with its figures in OUT/search-figures/

Everything that can be checked is checked before any trial starts: the algorithm and its
parameter types, the metric's name, and whether `concurrency` trials fit the CPUs and GPUs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.train

from segflow.config.recipe import Recipe
from segflow.errors import SearchError
from segflow.evaluate import metrics as metric_fns
from segflow.progress import TERMINAL, Progress
from segflow.search import report as search_report
from segflow.search.backend import TrialSummary, best_trial, open_backend
from segflow.search.trial import TrialSpec, trial_recipe
from segflow.store import join_uri, open_store
from segflow.train import FitResult, TrainOutcome, ensure_ray, make_job, publish, resolve_dataset

REPORT = "hyperparameter-optimization.md"


@dataclass(frozen=True)
class SearchOutcome:
    backend: str
    algo: str
    mode: str
    trials: list[TrialSummary]
    best: TrialSummary
    best_metric: float
    model: TrainOutcome
    report_uri: str
    wall_time_s: float
    web_ui: str | None = None


def check_search(recipe: Recipe) -> None:
    """Algorithm, parameter types and budget: everything that needs no data."""
    open_backend(recipe.search).check()
    check_fits(recipe)


def check_fits(recipe: Recipe, cpus: float | None = None, gpus: float | None = None) -> None:
    """Refuse a search whose `concurrency` trials cannot all train at once on this machine (or Ray cluster)."""
    search, training = recipe.search, recipe.training
    if cpus is None:
        cpus, gpus = _capacity()
    need_cpu = search.concurrency * training.num_workers * training.cpus_per_worker
    need_gpu = search.concurrency * training.num_workers if training.use_gpu else 0
    fix = ("lower search.concurrency, training.num_workers or training.cpus_per_worker (fractions work, "
           "e.g. 0.5)")
    if need_cpu > cpus + 1e-9:
        raise SearchError(f"the search needs {need_cpu:g} CPUs at once (search.concurrency {search.concurrency} x "
                          f"training.num_workers {training.num_workers} x training.cpus_per_worker "
                          f"{training.cpus_per_worker:g}) but there are {cpus:g}; {fix}")
    if need_gpu > (gpus or 0):
        raise SearchError(f"the search needs {need_gpu} GPUs at once (search.concurrency x training.num_workers) "
                          f"but there are {gpus or 0:g}; lower search.concurrency or set training.use_gpu=false")


def check_metric(recipe: Recipe, num_classes: int) -> None:
    names = metric_fns.reported(recipe.task, num_classes)
    if recipe.search.metric not in names:
        raise SearchError(f"search.metric {recipe.search.metric!r} is not reported by {recipe.task} training; "
                          f"use one of: {', '.join(names)}")


def _capacity() -> tuple[float, float]:
    if os.environ.get("RAY_ADDRESS"):
        ensure_ray()
        resources = ray.cluster_resources()
        return resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    import torch

    return float(os.cpu_count() or 1), float(torch.cuda.device_count())


def tune(recipe: Recipe, out_uri: str, *, dataset_uri: str | None = None, data_path: Path | None = None,
         progress: Progress = TERMINAL) -> SearchOutcome:
    """Search, promote the best trial's best epoch to OUT/model and OUT/eval, write search.json and the report."""
    started = time.monotonic()
    check_search(recipe)
    dataset = resolve_dataset(recipe, out_uri, dataset_uri, data_path, progress)
    check_metric(recipe, make_job(recipe, dataset, out_uri).model.num_classes)
    s = recipe.search
    spec = TrialSpec(recipe=recipe.model_dump(mode="json"), dataset_uri=dataset.uri, dataset_version=dataset.version,
                     metric=s.metric, mode=s.mode, max_epochs=s.max_epochs)
    workdir = _workdir(out_uri, recipe)
    ensure_ray()
    backend = open_backend(s)
    trials = backend.run(spec, workdir)
    best = best_trial(trials, s.mode)
    if best.checkpoint is None or not Path(best.checkpoint).is_dir():
        raise SearchError(f"the best trial {best.name} left no checkpoint at {best.checkpoint}; see {workdir}")
    checkpoint = ray.train.Checkpoint.from_directory(best.checkpoint)
    result = FitResult(best.history, checkpoint, {}, best.checkpoint, "")
    best_job = make_job(trial_recipe(recipe, best.params, s.max_epochs, s.metric, s.mode), dataset, out_uri)
    extra = {"search": {"backend": s.backend, "algo": s.algo, "trial": best.name, "params": best.params,
                        "metric": s.metric, "value": best.best(s.mode), "trials": len(trials)}}
    model = publish(best_job, dataset, result, out_uri, started=started, card_extra=extra)
    wall = time.monotonic() - started
    with tempfile.TemporaryDirectory(prefix="segflow-search-") as tmp:
        folder = Path(tmp)
        (folder / "search.json").write_text(json.dumps(
            {"recipe": recipe.name, "backend": s.backend, "algo": s.algo, "metric": s.metric, "mode": s.mode,
             "best": best.name, "trials": [t.summary() for t in trials]}, indent=2, default=float))
        search_report.write(recipe, trials, best, best.history, model, folder / REPORT,
                            wall_time_s=wall, web_ui=backend.web_ui)
        open_store(out_uri).put_tree(folder, last=(REPORT,))
    return SearchOutcome(s.backend, s.algo, s.mode, trials, best, best.best(s.mode), model,
                         join_uri(out_uri, REPORT), wall, backend.web_ui)


def _workdir(out_uri: str, recipe: Recipe) -> Path:
    local = open_store(out_uri).local_path()
    if local is not None:
        return local / "search"
    from segflow.data.dataset import cache_root

    return cache_root() / "search" / recipe.name
