"""`segflow nas`: search a cell architecture with DARTS, then retrain it as a plain segflow model.

    OUT/dataset/              the prepared dataset (when starting from raw data or the synthetic set)
    OUT/architecture.json     the chosen architecture: space name and version, size, choices, probabilities
    OUT/model/, OUT/eval/     the `darts` model retrained from scratch by the normal loop, and its evaluation
    OUT/neural-arch-search.md the report: search summary, chosen cells, comparison table, figures

The retrained model is a `darts` entry of the model registry (params = the exported
architecture), so packaging, serving and distillation treat it like any other model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from segflow.compress.compare import ModelFigures, measure, table
from segflow.compress.darts_search import SearchResult, search
from segflow.config import with_overrides
from segflow.config.recipe import Recipe
from segflow.data import PreparedDataset
from segflow.errors import ConfigError, ModelError
from segflow.evaluate import check_compatible, evaluate_split, figure_links
from segflow.evaluate.metrics import QUALITY
from segflow.models import ModelConfig
from segflow.models.artifact import load_model
from segflow.models.darts import (
    SPACE_VERSION,
    SPACES,
    SpaceSize,
    edge_label,
    inputs_label,
    node_label,
    space_for,
)
from segflow.progress import TERMINAL, Progress
from segflow.store import join_uri, open_store
from segflow.train import TrainOutcome, model_config_for, resolve_dataset, train

REPORT = "neural-arch-search.md"
ARCHITECTURE = "architecture.json"


@dataclass(frozen=True)
class NasOutcome:
    architecture: dict[str, Any]  # the document written to OUT/architecture.json
    architecture_uri: str
    retrained: TrainOutcome
    figures: list[ModelFigures]
    report: str


def space_size(recipe: Recipe, settings: dict[str, Any] | None = None) -> SpaceSize:
    """The space's size: the recipe's model.params when it names the darts model, then `settings` on top."""
    base = dict(recipe.model.params) if recipe.model.name == "darts" else {}
    for key in ("space", "space_version", "architecture"):
        base.pop(key, None)
    return SpaceSize.from_params(base | (settings or {}))


def model_params(document: dict[str, Any]) -> dict[str, Any]:
    """The `darts` model params that rebuild an architecture.json document."""
    missing = [key for key in ("space", "space_version", "size", "architecture") if key not in document]
    if missing:
        raise ModelError(f"the architecture document lacks {missing}; use an architecture.json written by "
                         "`segflow nas`")
    return {"space": document["space"], "space_version": document["space_version"],
            "architecture": document["architecture"], **document["size"]}


def nas(recipe: Recipe, out_uri: str, *, dataset_uri: str | None = None, data_path: Path | None = None,
        search_epochs: int | None = None, space_settings: dict[str, Any] | None = None,
        baseline_uri: str | None = None, progress: Progress = TERMINAL) -> NasOutcome:
    """Search (DARTS), export the architecture, retrain it from scratch, evaluate, report."""
    size = space_size(recipe, space_settings)
    space = space_for(recipe.task, size)
    dataset = resolve_dataset(recipe, out_uri, dataset_uri, data_path, progress)
    baseline = _load_baseline(baseline_uri, dataset) if baseline_uri else None  # refused before the long search
    epochs = search_epochs or recipe.search.max_epochs
    found = search(recipe, dataset, model_config_for(recipe, dataset), space, size, epochs, progress)
    document = _document(recipe, space, size, found, epochs, dataset)
    store = open_store(out_uri)
    store.put_text(ARCHITECTURE, json.dumps(document, indent=2))
    retrained = _retrain(recipe, document, out_uri, dataset.uri, progress)
    split = retrained.evaluation.evaluation.split
    quality = QUALITY[recipe.task]
    figures = [_searched(retrained, quality, f"darts ({space}, {size.describe()})")]
    if baseline:
        model, config = baseline
        figures.insert(0, measure("baseline", model, config,
                                  evaluate_split(model, config, dataset, split).metrics[quality]))
    store.put_text(REPORT, _report(recipe, document, figures, split, baseline_uri,
                                   retrained.evaluation.figures))
    return NasOutcome(document, join_uri(out_uri, ARCHITECTURE), retrained, figures, join_uri(out_uri, REPORT))


def _document(recipe: Recipe, space: str, size: SpaceSize, found: SearchResult, epochs: int,
              dataset: PreparedDataset) -> dict[str, Any]:
    """architecture.json: enough to rebuild the model (space, version, size, choices) and to trust it."""
    return {
        "space": space, "space_version": SPACE_VERSION, "task": recipe.task, "size": size.as_params(),
        "architecture": found.architecture, "probabilities": found.probabilities,
        "search": {"strategy": "nni.nas.strategy.DARTS (first order)", "epochs": epochs,
                   "dataset": {"uri": dataset.uri, "version": dataset.version},
                   "supernet_train_loss": round(found.supernet_loss, 4), "wall_time_s": round(found.wall_time_s, 1)},
    }


def _load_baseline(uri: str, dataset: PreparedDataset) -> tuple[nn.Module, ModelConfig]:
    model, config, _ = load_model(uri)
    try:
        check_compatible(config, dataset)
    except ModelError as exc:
        raise ModelError(f"the baseline {uri} does not fit this dataset: {exc}") from None
    return model, config


def _retrain(recipe: Recipe, document: dict, out_uri: str, dataset_uri: str, progress: Progress) -> TrainOutcome:
    """The normal training loop on the rebuilt architecture, from scratch (fresh: OUT may hold an older search)."""
    darts_recipe = with_overrides(recipe, {"model.name": "darts", "model.params": model_params(document),
                                           "model.weights": None})
    return train(darts_recipe, out_uri, dataset_uri=dataset_uri, fresh=True, progress=progress,
                 card_extra={"architecture": {"uri": join_uri(out_uri, ARCHITECTURE), "space": document["space"],
                                              "space_version": document["space_version"]}})


def _searched(outcome: TrainOutcome, quality: str, name: str) -> ModelFigures:
    """The retrained model's row, named by its space rather than by its (long) architecture params."""
    model, config, _ = load_model(outcome.model_uri)
    figures = measure("searched", model, config, outcome.evaluation.evaluation.metrics[quality])
    return dataclasses.replace(figures, name=name)


def _report(recipe: Recipe, document: dict, figures: list[ModelFigures], split: str,
            baseline: str | None, drawn: dict[str, str]) -> str:
    size = SpaceSize.from_params(document["size"])
    against = f"the baseline `{baseline}`" if baseline else "no baseline (pass --baseline MODEL_URI to add one)"
    return "\n".join([
        f"# Neural architecture search: {recipe.name}",
        "",
        _summary(document, size, split, against),
        "",
        table(figures, recipe.task, split),
        "",
        "## Chosen cells",
        "",
        "Each node sums its edges; `in0`, `in1` are the cell's inputs (a decoder cell's `in1` is the encoder skip), "
        "`nodeK` an earlier node. p is DARTS' softmax weight of the chosen op on that edge.",
        "",
        *_cells_table(document, size),
        "",
        "## Searched model run",
        "",
        figure_links(drawn),
    ])


def _summary(document: dict, size: SpaceSize, split: str, against: str) -> str:
    search = document["search"]
    return (f"DARTS (`{search['strategy']}`, one-shot, with NNI's Lightning evaluator) searched space "
            f"`{document['space']}` v{document['space_version']} ({size.describe()}; ops: {', '.join(size.ops)}) "
            f"for {search['epochs']} epoch(s), weights on the train split and architecture on the val split, in "
            f"{search['wall_time_s']:.0f} s (last supernet train loss {search['supernet_train_loss']:.4f}). The "
            "chosen architecture ([architecture.json](architecture.json)) was rebuilt as a plain `darts` model and "
            f"retrained from scratch with the normal training loop; it is compared with {against}. Same {split} split "
            "for every row; latency is batch 1 on this machine's CPU at the recipe's input size.")


def _cells_table(document: dict, size: SpaceSize) -> list[str]:
    architecture, probabilities = document["architecture"], document["probabilities"]
    rows = ["| cell | node | edges (input: op, p) |", "|---|---|---|"]
    for cell, n_inputs in SPACES[document["space"]].cells(size).items():
        for i in range(size.nodes):
            node = node_label(cell, i)
            sources = architecture.get(inputs_label(node), range(n_inputs + i))
            edges = [_edge(edge_label(node, j), _state(j, n_inputs), architecture, probabilities) for j in sources]
            rows.append(f"| {cell} | {i} | {'; '.join(edges)} |")
    return rows


def _edge(label: str, source: str, architecture: dict, probabilities: dict) -> str:
    op = architecture[label]
    return f"{source}: {op}, {probabilities[label][op]:.3f}"


def _state(index: int, n_inputs: int) -> str:
    return f"in{index}" if index < n_inputs else f"node{index - n_inputs}"


def parse_space(settings: list[str]) -> dict[str, Any]:
    """['cells=1', 'ops=[sep_conv_3x3, zero]'] -> {"cells": 1, "ops": [...]} (values read as YAML)."""
    parsed = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--space {item!r} is not key=value, e.g. --space cells=2 or "
                              "--space 'ops=[sep_conv_3x3, zero]'")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed
