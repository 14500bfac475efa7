"""The figures users would otherwise draw by hand, as PNG files (matplotlib, no display needed).

samples.png          10 validation images: image | ground truth | prediction, in class colours
loss.png             train and validation loss per epoch
metric.png           the validation quality metric(s) per epoch
precision_recall.png per-class precision and recall
pr_curve.png         precision-recall curve (binary tasks)
confusion.png        row-normalised confusion matrix
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from segflow.data.palette import colourise, palette  # noqa: E402
from segflow.evaluate.predict import Evaluation  # noqa: E402
from segflow.models import ModelConfig  # noqa: E402

DPI = 90


def draw_all(evaluation: Evaluation, config: ModelConfig, history: list[dict], folder: Path) -> dict[str, str]:
    """Write every figure that applies; returns name -> file name (relative to `folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn = {"samples": _samples(evaluation, config, folder / "samples.png")}
    if history:
        drawn["loss"] = _curves(history, ("train_loss", "val_loss"), "loss", folder / "loss.png")
        quality = ("val_miou", "val_mean_dice") if config.task == "segmentation" else ("val_accuracy", "val_top5")
        drawn["metric"] = _curves(history, quality, "validation metric", folder / "metric.png")
    drawn["precision_recall"] = _precision_recall(evaluation, config, folder / "precision_recall.png")
    drawn["confusion"] = _confusion(evaluation, config, folder / "confusion.png")
    if evaluation.pr_curve is not None:
        drawn["pr_curve"] = _pr_curve(evaluation, config, folder / "pr_curve.png")
    return drawn


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _samples(evaluation: Evaluation, config: ModelConfig, path: Path) -> str:
    colours = palette(config.classes)
    examples = evaluation.examples
    if config.task == "classification":
        cols = 5
        fig, axes = plt.subplots(math.ceil(len(examples) / cols), cols, figsize=(2.2 * cols, 2.6 * math.ceil(len(examples) / cols)), squeeze=False)
        for ax, ex in zip(axes.flat, examples, strict=False):
            ax.imshow(ex.image.squeeze(), cmap="gray" if ex.image.shape[-1] == 1 else None)
            ok = ex.prediction == ex.target
            ax.set_title(f"true: {config.classes[ex.target].name}\npred: {config.classes[ex.prediction].name}",
                         fontsize=8, color="green" if ok else "red")
        for ax in axes.flat:
            ax.axis("off")
        return _save(fig, path)
    fig, axes = plt.subplots(len(examples), 3, figsize=(7.5, 2.5 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples, strict=False):
        row[0].imshow(ex.image.squeeze(), cmap="gray" if ex.image.shape[-1] == 1 else None)
        row[1].imshow(colourise(ex.target, colours, config.ignore_index))
        row[2].imshow(colourise(ex.prediction, colours, config.ignore_index))
        for ax in row:
            ax.axis("off")
    for ax, title in zip(axes[0], ("image", "ground truth", "prediction"), strict=True):
        ax.set_title(title)
    handles = [Patch(color=colours[i] / 255, label=c.name) for i, c in enumerate(config.classes)]
    fig.legend(handles=handles, loc="upper center", ncol=min(6, len(handles)), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout()
    return _save(fig, path)


def _curves(history: list[dict], keys: tuple[str, ...], ylabel: str, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [r["epoch"] for r in history]
    for key in keys:
        if any(key in r for r in history):
            ax.plot(epochs, [r.get(key, np.nan) for r in history], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _precision_recall(evaluation: Evaluation, config: ModelConfig, path: Path) -> str:
    per_class = evaluation.metrics["per_class"]
    names = [c.name for c in config.classes]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(names) + 2), 3.5))
    ax.bar(x - 0.2, np.nan_to_num(per_class["precision"]), 0.4, label="precision")
    ax.bar(x + 0.2, np.nan_to_num(per_class["recall"]), 0.4, label="recall")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(f"per-class precision and recall ({evaluation.split})")
    ax.legend()
    return _save(fig, path)


def _confusion(evaluation: Evaluation, config: ModelConfig, path: Path) -> str:
    matrix = np.asarray(evaluation.metrics["confusion"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    names = [c.name for c in config.classes]
    size = max(4, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def _pr_curve(evaluation: Evaluation, config: ModelConfig, path: Path) -> str:
    precision, recall = evaluation.pr_curve
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"precision-recall: {config.classes[1].name}")
    ax.grid(alpha=0.3)
    return _save(fig, path)
