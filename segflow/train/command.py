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
from pathlib import Path

from segflow.config.recipe import Recipe
from segflow.evaluate import check_compatible
from segflow.models import ModelConfig
from segflow.progress import TERMINAL, Progress
from segflow.train.fit import fit
from segflow.train.job import DistillSpec, make_job, resolve_dataset
from segflow.train.publish import TrainOutcome, publish


def train(recipe: Recipe, out_uri: str, *, dataset_uri: str | None = None, data_path: Path | None = None,
          profile_steps: int = 0, fresh: bool = False, progress: Progress = TERMINAL,
          distill: DistillSpec | None = None, model: ModelConfig | None = None,
          card_extra: dict | None = None) -> TrainOutcome:
    started = time.monotonic()
    dataset = resolve_dataset(recipe, out_uri, dataset_uri, data_path, progress)
    job = make_job(recipe, dataset, out_uri, profile_steps=profile_steps, distill=distill, model=model)
    check_compatible(job.model, dataset)
    result = fit(job, out_uri, fresh=fresh, progress=progress)
    return publish(job, dataset, result, out_uri, started=started, card_extra=card_extra)
