"""One search trial: the recipe with the trial's parameters, trained by the same `fit` as `segflow train`.

Both backends call `train_trial`; they differ only in how an epoch is reported (NNI's trial SDK or
`ray.tune.report`) and in where the trial's folder is. A parameter name without a dot is a key of
`training` (`lr` -> `training.lr`); a dotted name is a full recipe path (`model.params.width`).
Each trial leaves `trial.json` in its folder, so the best one can be promoted after the search,
whichever backend ran it.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path

import ray.train
from pydantic import BaseModel, ConfigDict

from segflow.config.loader import parse_recipe, with_overrides
from segflow.config.recipe import Recipe
from segflow.data import open_dataset
from segflow.progress import SILENT
from segflow.search.backend import TrialSummary
from segflow.train import EpochHook, FitResult, fit, make_job

TRIAL_FILE = "trial.json"
TRIAL_RUN = "train"  # Ray Train's run folder inside a trial's folder


class TrialSpec(BaseModel):
    """What every trial of one search shares; travels as JSON to NNI's trial processes and Tune's actors."""

    model_config = ConfigDict(extra="forbid")

    recipe: dict  # the base recipe, as JSON (validated again in each trial)
    dataset_uri: str
    dataset_version: str
    metric: str
    mode: str
    max_epochs: int

    def base_recipe(self) -> Recipe:
        return parse_recipe(self.recipe, "the search's recipe")


def recipe_key(name: str) -> str:
    return name if "." in name else f"training.{name}"


def trial_recipe(base: Recipe, params: dict, epochs: int, metric: str, mode: str) -> Recipe:
    """The base recipe with a trial's parameters and epoch budget; its best epoch is the search metric's.

    Early stopping is left to the search's scheduler.
    """
    overrides = {recipe_key(name): value for name, value in params.items()}
    overrides |= {"training.epochs": epochs, "training.early_stopping_patience": None,
                  "training.monitor": metric, "training.monitor_mode": mode}
    return with_overrides(base, overrides)


def train_trial(spec: TrialSpec, params: dict, folder: Path, *, epochs: int | None = None,
                on_epoch: EpochHook | None = None, resume_from: ray.train.Checkpoint | None = None,
                stop: threading.Event | None = None) -> FitResult:
    """Train one trial in `folder` (started afresh there, or from `resume_from`); writes TRIAL_FILE.

    A trial ended through `stop` returns what it trained so far and writes no TRIAL_FILE.
    """
    recipe = trial_recipe(spec.base_recipe(), params, epochs or spec.max_epochs, spec.metric, spec.mode)
    dataset = open_dataset(spec.dataset_uri, spec.dataset_version)
    folder.mkdir(parents=True, exist_ok=True)
    job = make_job(recipe, dataset, str(folder))
    result = fit(job, str(folder), name=TRIAL_RUN, fresh=True, progress=SILENT, on_epoch=on_epoch,
                 resume_from=resume_from, stop=stop)
    if result.stopped_on_request:
        return result
    record = TrialSummary(folder.name, params, [float(epoch[spec.metric]) for epoch in result.history],
                          result.stopped or "SUCCEEDED", final=result.best_metrics[spec.metric],
                          checkpoint=result.best_checkpoint.path, history=result.history)
    (folder / TRIAL_FILE).write_text(json.dumps(asdict(record), indent=2, default=float))
    return result


def has_record(folder: Path) -> bool:
    """Whether the trial in `folder` ran to its end (a failed or stopped one leaves no TRIAL_FILE)."""
    return (folder / TRIAL_FILE).is_file()


def read_trial(folder: Path) -> TrialSummary:
    return TrialSummary(**json.loads((folder / TRIAL_FILE).read_text()))


def train_nni_trial(params: dict, args: dict, report) -> float:
    """NNI's trial function (segflow.search.nni_trial runs it): one intermediate result per epoch.

    `args` holds the TrialSpec, the search folder and the driver's Ray address, so every trial
    process joins the one Ray cluster instead of starting its own; Hyperband and BOHB add the
    epoch `budget`.
    """
    import nni  # only in NNI's trial processes

    os.environ["RAY_ADDRESS"] = args["ray_address"]
    spec = TrialSpec.model_validate(args["spec"])
    folder = Path(args["folder"]) / "trials" / nni.get_trial_id()
    result = train_trial(spec, params, folder, epochs=args.get("budget"),
                         on_epoch=lambda metrics, _: report(metrics[spec.metric]))
    return result.best_metrics[spec.metric]
