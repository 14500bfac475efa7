"""The `int8` model: a float model quantized with torch.ao's FX flow on the x86 (oneDNN/FBGEMM) backend.

The int8 network is a torch.fx GraphModule, not the registry's class, so an int8 artifact's
model.json names the `int8` builder with the float model's config inside:
`{"name": "int8", "params": {"base": {"name": "unet", "params": {...}}, "engine": "x86"}}`.
The builder rebuilds the float network, quantizes it without calibration (same graph, default
scales), and the saved state dict then sets weights, scales and zero points: it loads with
`torch.load(weights_only=True)` like any artifact.

The registry imports this module only to build an int8 model, so torch.ao's quantization
machinery stays out of every process that serves or trains a float model.
segflow.compress.quantize calibrates with `prepare` and `convert`, the same two steps.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.quantization import QConfig, QConfigMapping, default_weight_observer, get_default_qconfig_mapping
from torch.ao.quantization.observer import HistogramObserver
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from segflow.errors import ModelError
from segflow.models.model_config import ModelConfig
from segflow.models.registry import create_model
from segflow.models.traced import base_config, check_traceable

ENGINE = "x86"
NAME = "int8"
# torch.ao.quantization warns that it is deprecated (for torchao's PT2E flow, not installed here) and about
# its own observers' arguments; the FX flow it warns about is the one that runs on torch 2.13.
_QUIET = ("torch.ao.quantization is deprecated", "Please use quant_min and quant_max",
          "must run observer before calling calculate_qparams", "torch.quantize_per_tensor")


def build_int8(config: ModelConfig, weights=None) -> nn.Module:
    """The `int8` registry builder: the float model quantized with default scales, for a state dict to fill.

    The weights come from the artifact's state dict: `weights` is unused.
    """
    engine = config.params.get("engine")
    if engine not in torch.backends.quantized.supported_engines:
        raise ModelError(f"the int8 model was quantized for the {engine!r} backend, which this torch does not "
                         f"have (it has {torch.backends.quantized.supported_engines})")
    return convert(prepare(create_model(base_config(config)), config))


def _qconfig() -> QConfigMapping:
    # ConvTranspose2d has no per-channel int8 kernel: per-tensor weights for it.
    transpose = QConfig(activation=HistogramObserver.with_args(reduce_range=True), weight=default_weight_observer)
    return get_default_qconfig_mapping(ENGINE).set_object_type(nn.ConvTranspose2d, transpose)


def prepare(model: nn.Module, config: ModelConfig) -> torch.fx.GraphModule:
    """A copy of the float `model` with observers, ready for calibration batches."""
    torch.backends.quantized.engine = ENGINE
    float_model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    example = torch.randn(1, config.in_channels, *config.input_size)
    check_traceable(float_model, config, "int8 quantization")
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        return prepare_fx(float_model, _qconfig(), example_inputs=(example,))


def convert(prepared: torch.fx.GraphModule) -> nn.Module:
    """The int8 model from a prepared (and possibly calibrated) one."""
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        return convert_fx(prepared).eval()
