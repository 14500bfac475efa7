"""`segflow distill`: train a small student against a trained teacher (Hinton et al., 2015).

The student runs the normal Ray Train loop (checkpoints, figures, report) with the
Distillation objective of segflow's training loop; its model card names the teacher. The
student reuses the teacher's input normalisation so both networks see identical tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from segflow.compress.compare import ModelFigures, measure, table
from segflow.config import with_overrides
from segflow.config.recipe import Recipe
from segflow.errors import ConfigError, ModelError
from segflow.evaluate import check_compatible, evaluate_split, figure_links
from segflow.evaluate.metrics import QUALITY
from segflow.models.artifact import load_model
from segflow.progress import TERMINAL, Progress
from segflow.store import join_uri, open_store
from segflow.train import DistillSpec, TrainOutcome, model_config_for, resolve_dataset, train

REPORT = "knowledge-distillation.md"


@dataclass(frozen=True)
class DistillOutcome:
    student: TrainOutcome
    figures: list[ModelFigures]
    report: str


def parse_student(spec: str) -> dict:
    """'unet:depth=2,width=8' -> {"model.name": "unet", "model.params": {"depth": 2, "width": 8}}."""
    name, _, options = spec.partition(":")
    if not name:
        raise ConfigError(f"student spec {spec!r} names no model; use NAME[:key=value,...], e.g. unet:depth=2,width=8")
    params = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"student spec {spec!r}: {item!r} is not key=value")
        params[key.strip()] = yaml.safe_load(value)
    return {"model.name": name.strip(), "model.params": params, "model.weights": None}


def distill(recipe: Recipe, teacher_uri: str, student_spec: str, out_uri: str, *, dataset_uri: str | None = None,
            data_path: Path | None = None, temperature: float = 4.0, alpha: float = 0.5,
            progress: Progress = TERMINAL) -> DistillOutcome:
    teacher, teacher_config, teacher_card = load_model(teacher_uri)
    dataset = resolve_dataset(recipe, out_uri, dataset_uri, data_path, progress)
    try:
        check_compatible(teacher_config, dataset)
    except ModelError as exc:
        raise ModelError(f"the teacher {teacher_uri} does not fit this dataset: {exc}") from None
    student_recipe = with_overrides(recipe, parse_student(student_spec))
    student_config = model_config_for(student_recipe, dataset).model_copy(
        update={"mean": teacher_config.mean, "std": teacher_config.std})
    outcome = train(student_recipe, out_uri, dataset_uri=dataset.uri, progress=progress,
                    distill=DistillSpec(teacher_uri=teacher_uri, temperature=temperature, alpha=alpha),
                    model=student_config,
                    card_extra={"teacher": f"{teacher_uri} (version {teacher_card.get('version', '')})"})
    split = outcome.evaluation.evaluation.split
    student, student_config, _ = load_model(outcome.model_uri)
    quality = QUALITY[recipe.task]
    figures = [
        measure("teacher", teacher, teacher_config, evaluate_split(teacher, teacher_config, dataset, split).metrics[quality]),
        measure("student", student, student_config, outcome.evaluation.evaluation.metrics[quality]),
    ]
    report = _report(recipe, teacher_uri, student_spec, figures, split, temperature, alpha,
                     outcome.evaluation.figures)
    open_store(out_uri).put_text(REPORT, report)
    return DistillOutcome(outcome, figures, join_uri(out_uri, REPORT))


def _report(recipe: Recipe, teacher_uri: str, spec: str, figures: list[ModelFigures], split: str,
            temperature: float, alpha: float, drawn: dict[str, str]) -> str:
    return "\n".join([
        f"# Knowledge distillation: {recipe.name}",
        "",
        f"Teacher `{teacher_uri}`, student `{spec}`; loss = {alpha} x KL(student_T || teacher_T) x T^2 "
        f"+ {1 - alpha:.2g} x label loss, T = {temperature}. Same {split} split for every row; latency is "
        "batch 1 on this machine's CPU at the recipe's input size.",
        "",
        table(figures, recipe.task, split),
        "",
        "## Student run",
        "",
        figure_links(drawn),
    ])
