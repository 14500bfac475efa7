"""`segflow train`: dataset -> Ray Train run -> model artifact -> evaluation report.

    OUT/dataset/   the prepared dataset (when training starts from raw data or the synthetic set)
    OUT/ray/       Ray Train's checkpoints (one per epoch; the best two and the latest are kept)
    OUT/model/     the model artifact (weights, config, history, card), versioned
    OUT/eval/      metrics.json, figures/, report.md for the best epoch's weights
    OUT/profile/   with --profile: trace.json and top_operators.md

Re-running with the same OUT resumes from the latest checkpoint (`fresh=True` starts over).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from segflow.config.recipe import Recipe
from segflow.data import PreparedDataset, open_dataset, prep
from segflow.errors import ConfigError
from segflow.evaluate import EvalResult, check_compatible, evaluate_split, write_evaluation
from segflow.layout import RUN, ModelRecord
from segflow.models import ModelConfig, create_model, load_weights
from segflow.models.artifact import save_model
from segflow.models.preprocess import channel_stats
from segflow.store import join_uri
from segflow.train import metrics as metric_fns
from segflow.train.fit import FitResult, fit
from segflow.train.job import DistillSpec, TrainJob
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


def resolve_dataset(recipe: Recipe, out_uri: str, dataset_uri: str | None, data_path: Path | None,
                    show_progress: bool = False) -> PreparedDataset:
    """An already prepared dataset, or prep the recipe's data (raw folder / synthetic) into OUT/dataset."""
    if dataset_uri:
        return open_dataset(dataset_uri)
    if recipe.data.format != "synthetic" and data_path is None and recipe.data.path is None:
        raise ConfigError(f"recipe {recipe.name!r} needs data: pass --dataset URI (prepared) or --data PATH (raw)")
    result = prep(recipe, data_path, join_uri(out_uri, "dataset"), show_progress=show_progress)
    return open_dataset(result.uri, result.version)


def model_config_for(recipe: Recipe, dataset: PreparedDataset) -> ModelConfig:
    manifest = dataset.manifest
    if recipe.task != manifest.task:
        raise ConfigError(f"recipe {recipe.name!r} is a {recipe.task} recipe but dataset {dataset.uri} "
                          f"holds {manifest.task} data")
    if recipe.model.in_channels != manifest.sample_shape[-1]:
        raise ConfigError(
            f"model.in_channels is {recipe.model.in_channels} but the dataset's images have "
            f"{manifest.sample_shape[-1]} channel(s); set model.in_channels={manifest.sample_shape[-1]}"
        )
    images, _ = dataset.arrays("train")
    mean, std = channel_stats(images, seed=recipe.training.seed)
    return ModelConfig(
        name=recipe.model.name, task=recipe.task, classes=manifest.classes, in_channels=recipe.model.in_channels,
        input_size=tuple(manifest.sample_shape[:2]), params=recipe.model.params,
        binary=recipe.training.loss == "bce_dice", mean=mean, std=std, ignore_index=manifest.ignore_index,
    )


def make_job(recipe: Recipe, dataset: PreparedDataset, out_uri: str, *, init_weights: str | None = None,
             profile_steps: int = 0, distill: DistillSpec | None = None,
             model: ModelConfig | None = None) -> TrainJob:
    config = model or model_config_for(recipe, dataset)
    create_model(config, init_weights)  # fail here, on the driver, not in every worker
    monitor, names = recipe.training.monitored(recipe.task)[0], metric_fns.reported(recipe.task, config.num_classes)
    if monitor not in names:
        raise ConfigError(f"training.monitor {monitor!r} is not a metric training reports; use one of: "
                          f"{', '.join(names)}")
    return TrainJob(recipe=recipe, dataset_uri=dataset.uri, dataset_version=dataset.version, model=config,
                    run_uri=out_uri, init_weights=recipe.model.weights if init_weights is None else init_weights,
                    epochs=recipe.training.epochs, profile_steps=profile_steps, distill=distill)


def train(recipe: Recipe, out_uri: str, *, dataset_uri: str | None = None, data_path: Path | None = None,
          profile_steps: int = 0, fresh: bool = False, show_progress: bool = True,
          distill: DistillSpec | None = None, model: ModelConfig | None = None,
          card_extra: dict | None = None) -> TrainOutcome:
    started = time.monotonic()
    dataset = resolve_dataset(recipe, out_uri, dataset_uri, data_path, show_progress)
    job = make_job(recipe, dataset, out_uri, profile_steps=profile_steps, distill=distill, model=model)
    check_compatible(job.model, dataset)
    result = fit(job, out_uri, fresh=fresh, show_progress=show_progress)
    return publish(job, dataset, result, out_uri, started=started, card_extra=card_extra)


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
