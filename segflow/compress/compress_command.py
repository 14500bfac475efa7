"""`segflow compress`: a trained model made cheaper to run on CPU, by channel pruning and/or int8 quantization.

    segflow compress MODEL_URI --method int8 | prune[:RATIO] | prune[:RATIO]+int8

Pruning (segflow.compress.prune) removes a fraction of every convolution's channels, then
fine-tunes the smaller network with the normal training loop on the model's own recipe and
dataset (both read from its card); int8 (segflow.compress.quantize) quantizes after training,
calibrated on training images. Both steps write a normal model artifact: it loads, evaluates,
packages and serves like any other.

    OUT/pruned.pt       the pruned weights before fine-tuning (the fine-tuning run starts from them)
    OUT/finetune/       the fine-tuning run (ray/, model/, eval/), when pruning
    OUT/model/          the compressed model artifact; its card names the original model
    OUT/eval/           its evaluation on the original model's evaluation split
    OUT/compression.md  original vs each step: parameters, size, FLOPs, CPU latency, quality
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from segflow.compress.compare import ModelFigures, measure_side_by_side, table
from segflow.compress.prune import check_ratio, prune
from segflow.compress.quantize import int8_config, quantize
from segflow.config import parse_recipe, with_overrides
from segflow.config.recipe import Recipe
from segflow.data import PreparedDataset, open_dataset
from segflow.errors import ConfigError, ModelError
from segflow.evaluate import Evaluation, check_compatible, evaluate_arrays, write_evaluation
from segflow.evaluate.metrics import QUALITY, scalars
from segflow.layout import RUN, ModelRecord, RunLayout
from segflow.models import ModelConfig
from segflow.models.artifact import load_history, load_model, save_model
from segflow.models.preprocess import normalize
from segflow.progress import TERMINAL, Progress
from segflow.store import join_uri, open_store
from segflow.train import train

REPORT = "compression.md"
FINETUNE = RunLayout("finetune")  # the fine-tuning run after pruning, inside OUT
METHODS = ("prune", "int8")
DEFAULT_RATIO = 0.5
CALIBRATION_IMAGES = 64


@dataclass(frozen=True)
class Step:
    method: str
    ratio: float | None = None

    def __str__(self) -> str:
        return f"prune:{self.ratio:g}" if self.method == "prune" else self.method


@dataclass(frozen=True)
class CompressOutcome:
    model_uri: str
    model_version: str
    figures: list[ModelFigures]
    task: str
    split: str
    report: str


def parse_method(spec: str) -> list[Step]:
    """'prune:0.5+int8' -> [Step('prune', 0.5), Step('int8')]; pruning first, each method once."""
    steps = []
    for item in spec.split("+"):
        method, sep, value = item.strip().partition(":")
        if method not in METHODS:
            raise ConfigError(f"unknown compression method {method!r} in {spec!r}; use int8, prune[:RATIO] "
                              "or prune[:RATIO]+int8")
        if method == "int8" and sep:
            raise ConfigError(f"int8 takes no value ({item!r}); use --method int8")
        steps.append(Step("prune", check_ratio(_ratio(value, spec) if sep else DEFAULT_RATIO))
                     if method == "prune" else Step("int8"))
    methods = [s.method for s in steps]
    if len(set(methods)) != len(methods) or methods not in (["prune"], ["int8"], ["prune", "int8"]):
        raise ConfigError(f"{spec!r}: give each method once, pruning before int8 (an int8 model cannot be "
                          "pruned), e.g. prune:0.5+int8")
    return steps


def compress(model_uri: str, method: str, out_uri: str, *, dataset_uri: str | None = None, epochs: int | None = None,
             overrides: list[str] | None = None, progress: Progress = TERMINAL) -> CompressOutcome:
    """Compress the model at `model_uri` step by step; every step is evaluated on the same split and timed."""
    steps = parse_method(method)
    method = "+".join(map(str, steps))  # written out: "prune" -> "prune:0.5"
    if epochs is not None and epochs < 0:
        raise ConfigError(f"--epochs {epochs}: give the fine-tuning epochs after pruning, 0 or more")
    model, config, card = load_model(model_uri)
    if config.name == "int8":
        raise ModelError(f"{model_uri} is an int8 model already; compress its float model")
    dataset = _dataset(card, model_uri, dataset_uri)
    check_compatible(config, dataset)
    split = "test" if "test" in dataset.manifest.shards else "val"
    evaluation = _evaluate(model, config, dataset, split)
    rows = [("original", model, config, evaluation)]
    history = load_history(model_uri)
    for done, step in enumerate(steps, start=1):
        if step.method == "prune":
            model, config = prune(model, config, step.ratio)
            if epochs == 0:
                history = []  # the original's curves are another network's
            else:
                recipe = _recipe(card, model_uri, overrides or [])
                model, config, history = _finetune(model, config, recipe, dataset, out_uri, epochs, progress)
        else:
            model, config = quantize(model, config, _calibration(dataset, config)), int8_config(config)
        evaluation = _evaluate(model, config, dataset, split)
        rows.append(("+".join(map(str, steps[:done])), model, config, evaluation))
    return _publish(model_uri, card, rows, history, dataset, out_uri, method, epochs)


def _publish(model_uri: str, card: dict, rows: list, history: list[dict], dataset: PreparedDataset, out_uri: str,
             method: str, epochs: int | None) -> CompressOutcome:
    _, model, config, evaluation = rows[-1]
    new_card = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "compressed_from": f"{model_uri} (version {card.get('version', '')})",
        "compression": method,
        "recipe": card.get("recipe"),
        "dataset": {"uri": dataset.uri, "version": dataset.version, "hash": dataset.manifest.dataset_hash},
        "metrics": {"split": evaluation.split} | scalars(evaluation.metrics),
    }
    model_uri_out = join_uri(out_uri, RUN.model)
    new_card = save_model(model_uri_out, model, config, new_card, history)
    write_evaluation(evaluation, config, join_uri(out_uri, RUN.eval.root), history=history,
                     card=new_card | ModelRecord(model_uri_out, new_card["version"]).metadata(),
                     title=f"{dataset.manifest.name}: {config.name} ({method}) on the {evaluation.split} split")
    quality = QUALITY[config.task]
    figures = measure_side_by_side([(role, m, c, e.metrics[quality]) for role, m, c, e in rows])
    report = _report(model_uri, method, epochs, figures, config.task, evaluation.split)
    open_store(out_uri).put_text(REPORT, report)
    return CompressOutcome(model_uri_out, new_card["version"], figures, config.task, evaluation.split,
                           join_uri(out_uri, REPORT))


def _ratio(value: str, spec: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"pruning ratio {value!r} in {spec!r} is not a number; e.g. prune:0.5") from None


def _dataset(card: dict, model_uri: str, dataset_uri: str | None) -> PreparedDataset:
    uri = dataset_uri or (card.get("dataset") or {}).get("uri")
    if not uri:
        raise ConfigError(f"the card of {model_uri} names no dataset; pass --dataset URI (a prepared dataset)")
    return open_dataset(uri)


def _recipe(card: dict, model_uri: str, overrides: list[str]) -> Recipe:
    """The recipe the model was trained with (from its card), with `key=value` overrides for the fine-tuning."""
    if not isinstance(card.get("recipe"), dict):
        raise ConfigError(f"the card of {model_uri} holds no recipe to fine-tune the pruned model with; "
                          "give --epochs 0 to prune without fine-tuning")
    settings = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not key=value, e.g. --set training.lr=0.001")
        settings[key.strip()] = yaml.safe_load(value)
    return with_overrides(parse_recipe(card["recipe"], f"the recipe in {model_uri}'s card"), settings)


def _finetune(model: nn.Module, config: ModelConfig, recipe: Recipe, dataset: PreparedDataset, out_uri: str,
              epochs: int | None, progress: Progress) -> tuple[nn.Module, ModelConfig, list[dict]]:
    """Train the pruned network on, from its kept weights, with the normal loop (OUT/finetune)."""
    store = open_store(out_uri)
    with tempfile.TemporaryDirectory(prefix="segflow-pruned-") as tmp:
        torch.save(model.state_dict(), Path(tmp) / "pruned.pt")
        store.put_file("pruned.pt", Path(tmp) / "pruned.pt")
    weights = join_uri(out_uri, "pruned.pt")
    if "://" not in weights:  # Ray workers may run in another directory
        weights = str(Path(weights).resolve())
    settings = {"model.weights": weights} | ({"training.epochs": epochs} if epochs else {})
    outcome = train(with_overrides(recipe, settings), join_uri(out_uri, FINETUNE.root), dataset_uri=dataset.uri,
                    model=config, progress=progress)
    tuned, tuned_config, _ = load_model(outcome.model_uri)
    return tuned, tuned_config, load_history(outcome.model_uri)


def _calibration(dataset: PreparedDataset, config: ModelConfig, batch_size: int = 16) -> list[torch.Tensor]:
    """Up to CALIBRATION_IMAGES training images, spread over the split, normalised as training normalises them."""
    images, _ = dataset.arrays("train")
    pick = np.linspace(0, len(images) - 1, min(CALIBRATION_IMAGES, len(images))).astype(int)
    batch = torch.from_numpy(np.ascontiguousarray(images[pick])).permute(0, 3, 1, 2)
    return list(normalize(batch, config.mean, config.std).split(batch_size))


def _evaluate(model: nn.Module, config: ModelConfig, dataset: PreparedDataset, split: str) -> Evaluation:
    images, targets = dataset.arrays(split)
    return evaluate_arrays(model, config, images, targets, split, device="cpu")  # int8 kernels are CPU only


def _report(model_uri: str, method: str, epochs: int | None, figures: list[ModelFigures], task: str,
            split: str) -> str:
    count = epochs or "the recipe's"
    tuning = "" if "prune" not in method else (
        " Pruned models were not fine-tuned." if epochs == 0 else
        f" After pruning, the network was fine-tuned for {count} epochs "
        f"([{FINETUNE.eval.report}]({FINETUNE.eval.report})).")
    return "\n".join([
        f"# Compression: {method}",
        "",
        f"Model `{model_uri}`, compressed with `{method}`.{tuning} Every row is evaluated on the same "
        f"{split} split; latency is batch 1 on this machine's CPU ({torch.get_num_threads()} threads) at the "
        "model's input size, the models' runs interleaved so that other load falls on all alike.",
        "",
        table(figures, task, split),
        "",
        "The compressed model's evaluation (10 segmented images, curves, precision and recall): "
        f"[{RUN.eval.report}]({RUN.eval.report}).",
        "",
    ])
