"""Per-epoch quality metrics through torchmetrics, summarised into plain numbers.

torchmetrics keeps the running state (one confusion-matrix-like set of tensors) and syncs it
across DDP ranks on compute(), so every rank gets the same numbers. Classes that appear in
neither targets nor predictions are NaN (not 0) per class and left out of the means: a class
missing from a small validation set must not drag mIoU down.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

# The one number that ranks models of a task (reports, gating, distillation/search tables).
QUALITY = {"segmentation": "miou", "classification": "accuracy"}


def reported(task: str, num_classes: int) -> list[str]:
    """The scalar names every epoch reports (what training.monitor and search.metric may name)."""
    names = ["train_loss", "val_loss", "val_accuracy"]
    if task == "segmentation":
        names += ["val_miou", "val_mean_dice"]
    elif num_classes > 5:
        names.append("val_top5")
    return names + ["val_mean_precision", "val_mean_recall"]


def build_metrics(task: str, num_classes: int, ignore_index: int) -> MetricCollection:
    common = {"num_classes": num_classes, "average": "none"}
    if task == "segmentation":
        common["ignore_index"] = ignore_index
    metrics = {
        "accuracy": MulticlassAccuracy(num_classes, average="micro",
                                       ignore_index=ignore_index if task == "segmentation" else None),
        "precision": MulticlassPrecision(**common),
        "recall": MulticlassRecall(**common),
        "f1": MulticlassF1Score(**common),
        "confusion": MulticlassConfusionMatrix(num_classes, ignore_index=common.get("ignore_index")),
    }
    if task == "segmentation":
        metrics["iou"] = MulticlassJaccardIndex(**common, zero_division=float("nan"))
    elif num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


def update(metrics: MetricCollection, probabilities: torch.Tensor, target: torch.Tensor) -> None:
    """Feed one batch: class probabilities (N, C, ...) and integer targets (N, ...)."""
    predicted = probabilities.argmax(dim=1)
    for name, metric in metrics.items():
        metric.update(probabilities if name == "top5" else predicted, target)


def summarise(metrics: MetricCollection, task: str, prefix: str = "val_") -> dict:
    """Scalars (`val_miou`, `val_accuracy`, ...) plus per-class lists and the confusion matrix."""
    values = {name: metric.compute() for name, metric in metrics.items()}
    confusion = values["confusion"]
    absent = (confusion.sum(dim=0) + confusion.sum(dim=1)) == 0
    per_class = {}
    for name in ("precision", "recall", "f1", "iou"):
        if name in values:
            per_class[name] = [math.nan if absent[i] else float(v) for i, v in enumerate(values[name])]
    out = {f"{prefix}accuracy": float(values["accuracy"])}
    if task == "segmentation":
        out[f"{prefix}miou"] = _nanmean(per_class["iou"])
        out[f"{prefix}mean_dice"] = _nanmean(per_class["f1"])
    if "top5" in values:
        out[f"{prefix}top5"] = float(values["top5"])
    out[f"{prefix}mean_precision"] = _nanmean(per_class["precision"])
    out[f"{prefix}mean_recall"] = _nanmean(per_class["recall"])
    out[f"{prefix}per_class"] = per_class
    out[f"{prefix}confusion"] = confusion.tolist()
    return out


def scalars(record: dict) -> dict:
    """Only the numeric entries of a metrics record (what progress bars and Ray reports show)."""
    return {k: v for k, v in record.items() if isinstance(v, int | float)}


def _nanmean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan
