"""TrainJob: the complete, serialisable description of one training run.

The same object drives a plain `segflow train`, each search trial, a DARTS retraining and a
distillation student: the caller fills it in, `segflow.train.fit` runs it on Ray Train.
It is validated on the driver and again (cheaply) on every worker, which receives it as JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from segflow.config.recipe import Recipe
from segflow.models import ModelConfig


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
