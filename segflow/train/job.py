"""TrainJob: the complete, serialisable description of one training run, and how a recipe becomes one.

The same object drives a plain `segflow train`, each search trial, a DARTS retraining and a
distillation student: the caller fills it in (`make_job` from a recipe and its prepared
dataset), `segflow.train.fit` runs it on Ray Train. It is validated on the driver and again
(cheaply) on every worker, which receives it as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from segflow.config.recipe import Recipe
from segflow.data import PreparedDataset, open_dataset, prep
from segflow.errors import ConfigError
from segflow.evaluate import metrics as metric_fns
from segflow.models import ModelConfig, create_model
from segflow.models.preprocess import channel_stats
from segflow.progress import SILENT, Progress
from segflow.store import join_uri


class DistillSpec(BaseModel):
    """Train against a teacher's softened outputs as well as the labels (Hinton et al., 2015)."""

    model_config = ConfigDict(extra="forbid")

    teacher_uri: str
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation term; 1-alpha on labels")


class TrainJob(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    recipe: Recipe
    dataset_uri: str
    dataset_version: str
    model: ModelConfig
    run_uri: str = Field(description="where the profiler and other side outputs are written")
    init_weights: str | None = None
    epochs: int
    profile_steps: int = Field(0, ge=0, description="profile this many steps of the first epoch (0: off)")
    distill: DistillSpec | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="free-form tags carried into reports")

    @property
    def monitored(self) -> tuple[str, str]:
        return self.recipe.training.monitored(self.recipe.task)


def resolve_dataset(recipe: Recipe, out_uri: str, dataset_uri: str | None, data_path: Path | None,
                    progress: Progress = SILENT) -> PreparedDataset:
    """An already prepared dataset, or prep the recipe's data (raw folder / synthetic) into OUT/dataset."""
    if dataset_uri:
        return open_dataset(dataset_uri)
    if recipe.data.format != "synthetic" and data_path is None and recipe.data.path is None:
        raise ConfigError(f"recipe {recipe.name!r} needs data: pass --dataset URI (prepared) or --data PATH (raw)")
    result = prep(recipe, data_path, join_uri(out_uri, "dataset"), progress=progress)
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
