"""Side-by-side figures of models on the same split: parameters, size, FLOPs, CPU latency, quality.

This is the table the distillation and architecture-search reports are built around; every
number is measured here, on this machine, at the recipe's input size.
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segflow.evaluate.metrics import QUALITY
from segflow.models import ModelConfig, count_parameters, create_model
from segflow.models.preprocess import for_inference
from segflow.models.traced import base_config

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
    return measure_side_by_side([(role, model, config, quality)])[0]


def measure_side_by_side(rows: list[tuple[str, nn.Module, ModelConfig, float]], runs: int = 20,
                         warmup: int = 3) -> list[ModelFigures]:
    """`measure` for (role, model, config, quality) rows at once, their timed runs interleaved.

    Load from other jobs on the machine then falls on every model alike, so the latency ratios
    hold where the absolute numbers do not. An int8 row counts the FLOPs of the float network it
    quantizes: the same multiply-adds, in 8 bits (torch's FLOP counter sees no int8 kernel).
    """
    p50s = interleaved_latency_ms([(model, config) for _, model, config, _ in rows], runs, warmup)
    figures = []
    for (role, model, config, quality), p50 in zip(rows, p50s, strict=True):
        counted = create_model(base_config(config)) if config.name == "int8" else model
        figures.append(ModelFigures(role, _name(config), count_parameters(model), _state_bytes(model),
                                    gflops(counted, config), p50, quality))
    return figures


def interleaved_latency_ms(models: list[tuple[nn.Module, ModelConfig]], runs: int = 20, warmup: int = 3) -> list[float]:
    """p50 batch-1 CPU latency per model, one run of each in turn, in channels-last memory like `cpu_latency_ms`."""
    prepared = [(for_inference(model.to("cpu")),
                 torch.randn(1, config.in_channels, *config.input_size).contiguous(memory_format=torch.channels_last))
                for model, config in models]
    timings: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for i in range(warmup + runs):
            for (model, x), times in zip(prepared, timings, strict=True):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000)
    return [statistics.median(times) for times in timings]


def _name(config: ModelConfig) -> str:
    """A row's model name: the builder and its options, without the bulk (a DARTS architecture, pruned sizes)."""
    if config.name in ("int8", "pruned"):
        how = f" pruned {config.params['ratio']:.0%}" if config.name == "pruned" else " int8"
        return _name(base_config(config)) + how
    if config.name == "darts":
        size = ", ".join(f"{k}={config.params[k]}" for k in ("cells", "width", "nodes") if k in config.params)
        return f"darts ({config.params.get('space')}, {size})"
    return f"{config.name} {config.params or ''}".strip()


def _state_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


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
