"""int8 post-training quantization for CPU inference: torch.ao's FX flow on the x86 (oneDNN/FBGEMM) backend.

Static quantization: weights per output channel, activations per tensor with scales
calibrated on a few training images. On the quickstart U-Net it ran 1.7x (64x64) to 2.5x
(256x256) faster than the float model in channels-last memory on an AVX-512 VNNI CPU
(docs/compression.md has the numbers).

The int8 model's graph, engine and builder live in segflow.models.quantized, which rebuilds an
int8 artifact without this module.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from segflow.errors import ModelError
from segflow.models import ModelConfig
from segflow.models.quantized import ENGINE, NAME, convert, prepare


def int8_config(config: ModelConfig) -> ModelConfig:
    """The config of `config`'s model quantized to int8 (rebuilds through the `int8` builder)."""
    if config.name == NAME:
        raise ModelError("the model is int8 already; quantize its float model instead")
    base = {"name": config.name, "params": config.params}
    return config.model_copy(update={"name": NAME, "params": {"base": base, "engine": ENGINE}})


def quantize(model: nn.Module, config: ModelConfig, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """`model` with int8 weights and activations, activation ranges observed on the `calibration` batches."""
    prepared = prepare(model, config)
    with torch.no_grad():
        for batch in calibration:
            prepared(batch.contiguous())
    return convert(prepared)
