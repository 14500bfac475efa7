"""int8 post-training quantization for CPU inference: torch.ao's FX flow on the x86 (oneDNN/FBGEMM) backend.

Static quantization: weights per output channel, activations per tensor with scales
calibrated on a few training images. On the quickstart U-Net it ran 1.7x (64x64) to 2.5x
(256x256) faster than the float model in channels-last memory on an AVX-512 VNNI CPU
(docs/compression.md has the numbers).

The int8 network is a torch.fx GraphModule, not the registry's class, so an int8 artifact's
model.json names the `int8` builder with the float model's config inside:
`{"name": "int8", "params": {"base": {"name": "unet", "params": {...}}, "engine": "x86"}}`.
The builder rebuilds the float network, quantizes it without calibration (same graph, default
scales), and the saved state dict then sets weights, scales and zero points: it loads with
`torch.load(weights_only=True)` like any artifact.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.ao.quantization import QConfig, QConfigMapping, default_weight_observer, get_default_qconfig_mapping
from torch.ao.quantization.observer import HistogramObserver
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from segflow.compress.traced import base_config, check_traceable
from segflow.errors import ModelError

if TYPE_CHECKING:
    from segflow.models import ModelConfig

ENGINE = "x86"
NAME = "int8"
# torch.ao.quantization warns that it is deprecated (for torchao's PT2E flow, not installed here) and about
# its own observers' arguments; the FX flow it warns about is the one that runs on torch 2.13.
_QUIET = ("torch.ao.quantization is deprecated", "Please use quant_min and quant_max",
          "must run observer before calling calculate_qparams", "torch.quantize_per_tensor")


def int8_config(config: ModelConfig) -> ModelConfig:
    """The config of `config`'s model quantized to int8 (rebuilds through the `int8` builder)."""
    if config.name == NAME:
        raise ModelError("the model is int8 already; quantize its float model instead")
    base = {"name": config.name, "params": config.params}
    return config.model_copy(update={"name": NAME, "params": {"base": base, "engine": ENGINE}})


def quantize(model: nn.Module, config: ModelConfig, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """`model` with int8 weights and activations, activation ranges observed on the `calibration` batches."""
    prepared = _prepare(model, config)
    with torch.no_grad():
        for batch in calibration:
            prepared(batch.contiguous())
    return _convert(prepared)


def build_int8(config: ModelConfig) -> nn.Module:
    """The `int8` registry builder: the float model quantized with default scales, for a state dict to fill."""
    from segflow.models import create_model

    engine = config.params.get("engine")
    if engine not in torch.backends.quantized.supported_engines:
        raise ModelError(f"the int8 model was quantized for the {engine!r} backend, which this torch does not "
                         f"have (it has {torch.backends.quantized.supported_engines})")
    return _convert(_prepare(create_model(base_config(config)), config))


def _qconfig() -> QConfigMapping:
    # ConvTranspose2d has no per-channel int8 kernel: per-tensor weights for it.
    transpose = QConfig(activation=HistogramObserver.with_args(reduce_range=True), weight=default_weight_observer)
    return get_default_qconfig_mapping(ENGINE).set_object_type(nn.ConvTranspose2d, transpose)


def _prepare(model: nn.Module, config: ModelConfig) -> torch.fx.GraphModule:
    torch.backends.quantized.engine = ENGINE
    float_model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    example = torch.randn(1, config.in_channels, *config.input_size)
    check_traceable(float_model, config, "int8 quantization")
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        return prepare_fx(float_model, _qconfig(), example_inputs=(example,))


def _convert(prepared: torch.fx.GraphModule) -> nn.Module:
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        return convert_fx(prepared).eval()
