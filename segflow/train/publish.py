"""The end of every training run: the best epoch's weights become a versioned model artifact and an evaluation.

    OUT/model/     the model artifact (weights, config, history, card), versioned
    OUT/eval/      metrics.json, figures/, report.md for the best epoch's weights
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from segflow.data import PreparedDataset
from segflow.evaluate import EvalResult, evaluate_split, write_evaluation
from segflow.evaluate import metrics as metric_fns
from segflow.layout import RUN, ModelRecord
from segflow.models import ModelConfig, create_model, load_weights
from segflow.models.artifact import save_model
from segflow.store import join_uri
from segflow.train.fit import FitResult
from segflow.train.job import TrainJob
from segflow.train.loop import STATE_FILE


@dataclass(frozen=True)
class TrainOutcome:
    model_uri: str
    model_version: str
    evaluation: EvalResult
    fit: FitResult
    wall_time_s: float

    @property
    def record(self) -> ModelRecord:
        """The published model as a pipeline step hands it on."""
        return ModelRecord(self.model_uri, self.model_version)


def publish(job: TrainJob, dataset: PreparedDataset, result: FitResult, out_uri: str, *, started: float,
            card_extra: dict | None = None) -> TrainOutcome:
    """The best epoch's weights -> evaluation on the held-out split -> OUT/model (versioned) and OUT/eval.

    A plain run, and a search promoting its best trial, end the same way.
    """
    recipe = job.recipe
    network = best_model(job.model, result)
    card = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": recipe.model_dump(mode="json"),
        "dataset": {"uri": dataset.uri, "version": dataset.version, "hash": dataset.manifest.dataset_hash},
        "training": {"epochs_run": len(result.history), "stopped": result.stopped,
                     "workers": recipe.training.num_workers, "best_epoch": result.best_metrics.get("epoch"),
                     "monitor": job.monitored[0], "wall_time_s": round(time.monotonic() - started, 1)},
        **(card_extra or {}),
    }
    # The best epoch was picked on val; report on the held-out test split where there is one.
    evaluation = evaluate_split(network, job.model, dataset, "test" if "test" in dataset.manifest.shards else "val")
    card["metrics"] = {"split": evaluation.split} | metric_fns.scalars(evaluation.metrics)
    model_uri = join_uri(out_uri, RUN.model)
    card = save_model(model_uri, network, job.model, card, result.history)
    report = write_evaluation(evaluation, job.model, join_uri(out_uri, RUN.eval.root), history=result.history,
                              card=card | ModelRecord(model_uri, card["version"]).metadata(),
                              title=f"{recipe.name}: {job.model.name} on the {evaluation.split} split")
    return TrainOutcome(model_uri, card["version"], report, result, time.monotonic() - started)


def best_model(config: ModelConfig, result: FitResult) -> torch.nn.Module:
    """The network with the weights of the best epoch's checkpoint."""
    model = create_model(config)
    with result.best_checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    load_weights(model, state["model"], str(result.best_checkpoint.path))
    return model.eval()
