"""Evaluation: metrics.json, figures and report.md for a model on a dataset split.

`evaluate_split` + `write_evaluation` work on an in-memory model (the end of `segflow train`);
`evaluate_uri` loads a model artifact first (`segflow evaluate MODEL_URI`). Same outputs.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from segflow.data import PreparedDataset, open_dataset
from segflow.errors import ModelError
from segflow.evaluate import metrics
from segflow.evaluate.figures import DPI, draw_all
from segflow.evaluate.predict import Evaluation, evaluate_arrays
from segflow.evaluate.ranking import pick_best
from segflow.evaluate.report import figure_links, render, to_html
from segflow.layout import EVAL
from segflow.models import ModelConfig
from segflow.store import join_uri, open_store


@dataclass(frozen=True)
class EvalResult:
    evaluation: Evaluation
    uri: str
    report: str
    figures: dict[str, str]


def check_compatible(config: ModelConfig, dataset: PreparedDataset) -> None:
    """The model's classes and input must be the dataset's; refuse with both lists otherwise."""
    manifest = dataset.manifest
    ours, theirs = [c.name for c in config.classes], [c.name for c in manifest.classes]
    if ours != theirs:
        raise ModelError(f"the model predicts classes {ours} but dataset {dataset.uri} has {theirs}; "
                         "use a model trained on this dataset's classes")
    if config.in_channels != manifest.sample_shape[-1]:
        raise ModelError(f"the model takes {config.in_channels}-channel input but dataset {dataset.uri} "
                         f"has {manifest.sample_shape[-1]}-channel images")


def evaluate_split(model: nn.Module, config: ModelConfig, dataset: PreparedDataset, split: str = "val") -> Evaluation:
    check_compatible(config, dataset)
    images, targets = dataset.arrays(split)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return evaluate_arrays(model, config, images, targets, split, device=device)


def write_evaluation(evaluation: Evaluation, config: ModelConfig, out_uri: str, *, history: list[dict],
                     card: dict, title: str) -> EvalResult:
    """metrics.json, history.json, figures/*.png and report.md (last) into the store at `out_uri`."""
    store = open_store(out_uri)
    with tempfile.TemporaryDirectory(prefix="segflow-eval-") as tmp:
        folder = Path(tmp)
        figures = draw_all(evaluation, config, history, folder / EVAL.figures)
        metrics = {"split": evaluation.split, "samples": evaluation.samples, **evaluation.metrics}
        (folder / EVAL.metrics).write_text(json.dumps(metrics, indent=2))
        (folder / EVAL.history).write_text(json.dumps(history, indent=1))
        (folder / EVAL.report).write_text(render(title, evaluation, config, card, figures, history))
        store.put_tree(folder, last=(EVAL.report,))
    return EvalResult(evaluation, store.uri, join_uri(store.uri, EVAL.report), figures)


def evaluate_uri(model_uri: str, dataset_uri: str, out_uri: str, split: str = "val") -> EvalResult:
    from segflow.models.artifact import load_history, load_model

    model, config, card = load_model(model_uri)
    dataset = open_dataset(dataset_uri)
    evaluation = evaluate_split(model, config, dataset, split)
    return write_evaluation(evaluation, config, out_uri, history=load_history(model_uri), card=card,
                            title=f"{dataset.manifest.name}: {config.name} on the {split} split")


# The face: `metrics` (the per-epoch metrics training and search share) is a public module.
__all__ = ["DPI", "EvalResult", "Evaluation", "check_compatible", "evaluate_arrays", "evaluate_split", "evaluate_uri",
           "figure_links", "metrics", "pick_best", "to_html", "write_evaluation"]
