"""One factory that builds the network a ModelConfig names, from the registry table segflow.config.recipe.MODELS.

The ModelConfig travels with the weights (model.json in every model artifact), so training,
evaluation, distillation and serving all rebuild exactly the same network.
"""

from __future__ import annotations

import difflib
import importlib

import torch
from torch import nn
from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule

from segflow.config.recipe import MODELS
from segflow.errors import ModelError
from segflow.models.model_config import ModelConfig
from segflow.models.weights import is_torchvision_name, load_state_dict, torchvision_weights


def create_model(config: ModelConfig, weights: str | None = None) -> nn.Module:
    """Build the network named in `config`; `weights` is a torchvision weights name or a state dict URI."""
    if config.name not in MODELS:
        hint = difflib.get_close_matches(config.name, list(MODELS), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ModelError(f"unknown model {config.name!r}{did_you_mean}; known models: {', '.join(MODELS)}")
    entry = MODELS[config.name]
    if config.task not in entry.tasks:
        raise ModelError(f"model {config.name!r} is a {entry.tasks[0]} model but the data is a {config.task} dataset")
    if config.binary and config.num_classes != 2:
        raise ModelError(f"a binary (sigmoid) head needs 2 classes, the data has {config.num_classes}")
    backbone = torchvision_weights(weights) if weights and is_torchvision_name(weights) else None
    try:
        model = _builder(entry.builder)(config, backbone)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build {config.name!r} with params {config.params}: {exc}") from None
    if weights and backbone is None:
        load_weights(model, load_state_dict(weights), weights)
    return model


def _builder(path: str):
    """The builder a registry entry names ("module:function"), imported only when its model is built."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict, explaining a mismatch (another model, another head) instead of a dump."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and _shape(own[k]) != _shape(state[k])]
    if missing or unexpected or wrong:
        details = []
        if wrong:
            key = wrong[0]
            details.append(f"{len(wrong)} tensor(s) of another shape, e.g. {key}: "
                           f"{_shape(state[key])} in the file vs {_shape(own[key])} here")
        if missing:
            details.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise ModelError(
            f"weights from {source} do not fit this model ({'; '.join(details)}); they come from "
            "another architecture, class count or input channel count"
        )
    model.load_state_dict(state)


def _shape(entry: object) -> object:
    """A state dict entry's shape; an int8 Linear layer also stores a dtype and a (weight, bias) tuple."""
    if isinstance(entry, torch.Tensor):
        return tuple(entry.shape)
    if isinstance(entry, tuple):
        return tuple(_shape(item) for item in entry)
    return entry


def count_parameters(model: nn.Module) -> int:
    """Weights and biases, counting an int8 model's too: they are packed, outside model.parameters()."""
    packed = sum(t.numel() for m in model.modules() if isinstance(m, WeightedQuantizedModule) and callable(m.weight)
                 for t in (m.weight(), m.bias()) if t is not None)
    return packed + sum(p.numel() for p in model.parameters())


def probabilities(logits: torch.Tensor, binary: bool) -> torch.Tensor:
    """Class probabilities (N, C, ...) from logits; a binary head's one channel becomes two."""
    if binary:
        positive = torch.sigmoid(logits)
        return torch.cat([1 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)

