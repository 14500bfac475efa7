"""Side-by-side figures of models on the same split: parameters, size, FLOPs, CPU latency, quality.

This is the table the distillation and architecture-search reports are built around; every
number is measured here, on this machine, at the recipe's input size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segflow.models import ModelConfig, count_parameters
from segflow.models.artifact import cpu_latency_ms
from segflow.train.metrics import QUALITY

LABELS = {"miou": "mIoU", "accuracy": "accuracy"}


@dataclass(frozen=True)
class ModelFigures:
    role: str
    name: str
    parameters: int
    size_bytes: int
    gflops: float
    latency_p50_ms: float
    quality: float


def measure(role: str, model: nn.Module, config: ModelConfig, quality: float) -> ModelFigures:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return ModelFigures(role, f"{config.name} {config.params or ''}".strip(), count_parameters(model),
                        buffer.getbuffer().nbytes, gflops(model, config), cpu_latency_ms(model, config)["p50"],
                        quality)


def gflops(model: nn.Module, config: ModelConfig) -> float:
    """Floating-point operations of one forward pass at the model's input size, in GFLOPs."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.randn(1, config.in_channels, *config.input_size))
    return counter.get_total_flops() / 1e9


def table(rows: list[ModelFigures], task: str, split: str) -> str:
    label = LABELS[QUALITY[task]]
    base = rows[0]
    lines = [f"| model | role | parameters | size | GFLOPs | CPU latency p50 | {label} ({split}) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r is base else f" ({base.parameters / r.parameters:.1f}x fewer)"
        speed = "" if r is base else f" ({base.latency_p50_ms / r.latency_p50_ms:.1f}x faster)"
        lines.append(f"| {r.name} | {r.role} | {r.parameters:,}{ratio} | {r.size_bytes / 1e6:.2f} MB | "
                     f"{r.gflops:.3f} | {r.latency_p50_ms:.1f} ms{speed} | {r.quality:.4f} |")
    return "\n".join(lines)
