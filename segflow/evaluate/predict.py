"""Run a model over a dataset split: metrics, a fixed set of example predictions, a PR curve.

Uses the same metric code as the training loop (segflow.evaluate.metrics), so the numbers in a
report are the numbers the run monitored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchmetrics.classification import BinaryPrecisionRecallCurve

from segflow.evaluate import metrics as metric_fns
from segflow.models import ModelConfig, probabilities
from segflow.models.preprocess import for_inference, normalize

EXAMPLES = 10


@dataclass
class Example:
    image: np.ndarray  # HxWxC uint8
    target: np.ndarray | int
    prediction: np.ndarray | int
    confidence: float


@dataclass
class Evaluation:
    split: str
    samples: int
    metrics: dict
    examples: list[Example]
    pr_curve: tuple[list[float], list[float]] | None  # (precision, recall), binary tasks only


@torch.no_grad()
def evaluate_arrays(model: nn.Module, config: ModelConfig, images: np.ndarray, targets: np.ndarray,
                    split: str, batch_size: int = 32, device: str = "cpu") -> Evaluation:
    model = for_inference(model.to(device))
    collection = metric_fns.build_metrics(config.task, config.num_classes, config.ignore_index).to(device)
    curve = BinaryPrecisionRecallCurve(thresholds=101, ignore_index=config.ignore_index).to(device) \
        if config.num_classes == 2 else None
    wanted = set(np.linspace(0, len(images) - 1, min(EXAMPLES, len(images))).astype(int).tolist())
    examples = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).permute(0, 3, 1, 2)
        target = torch.from_numpy(np.asarray(targets[start : start + batch_size]).astype(np.int64)).to(device)
        inputs = normalize(batch.to(device), config.mean, config.std).contiguous(memory_format=torch.channels_last)
        probs = probabilities(model(inputs).float(), config.binary)
        metric_fns.update(collection, probs, target)
        if curve is not None:
            curve.update(probs[:, 1], target)
        confidence, predicted = probs.max(dim=1)
        for offset in range(len(batch)):
            if start + offset in wanted:
                examples.append(Example(
                    image=np.asarray(images[start + offset]),
                    target=np.asarray(targets[start + offset]) if config.task == "segmentation" else int(targets[start + offset]),
                    prediction=predicted[offset].cpu().numpy().astype(np.uint8) if config.task == "segmentation" else int(predicted[offset]),
                    confidence=float(confidence[offset].mean()),
                ))
    pr = None
    if curve is not None:
        precision, recall, _ = curve.compute()
        pr = (precision.tolist(), recall.tolist())
    return Evaluation(split, len(images), metric_fns.summarise(collection, config.task, prefix=""), examples, pr)
