"""Model registry: a name -> builder table and one factory that builds from a ModelConfig.

The ModelConfig travels with the weights (model.json in every model artifact), so training,
evaluation, distillation and serving all rebuild exactly the same network.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule

from segflow.compress.darts_cells import build_darts
from segflow.compress.prune import build_pruned
from segflow.compress.quantize import build_int8
from segflow.config.recipe import ClassSpec, Task
from segflow.errors import ModelError
from segflow.models.classifiers import build_resnet, build_smallcnn, build_vgg16
from segflow.models.fcn import FCN8s
from segflow.models.torchvision_seg import build_deeplabv3, build_lraspp
from segflow.models.unet import UNet
from segflow.models.weights import is_torchvision_name, load_state_dict, torchvision_weights

Builder = Callable[..., nn.Module]


def _small(config: ModelConfig) -> bool:
    return min(config.input_size) < 64


# A task of None: the builder serves both tasks and checks the config's task itself (darts: its space's task).
MODELS: dict[str, tuple[Task | None, Builder]] = {
    "unet": ("segmentation", lambda c, w: UNet(c.in_channels, c.out_channels, **c.params)),
    "fcn_vgg16": ("segmentation", lambda c, w: FCN8s(c.in_channels, c.out_channels, backbone_weights=w, **c.params)),
    "deeplabv3_resnet50": ("segmentation", lambda c, w: build_deeplabv3(c.in_channels, c.out_channels, w, **c.params)),
    "lraspp_mobilenet_v3_large": ("segmentation", lambda c, w: build_lraspp(c.in_channels, c.out_channels, w, **c.params)),
    "resnet18": ("classification", lambda c, w: build_resnet(18, c.in_channels, c.out_channels, w, _small(c), **c.params)),
    "resnet34": ("classification", lambda c, w: build_resnet(34, c.in_channels, c.out_channels, w, _small(c), **c.params)),
    "vgg16": ("classification", lambda c, w: build_vgg16(c.in_channels, c.out_channels, w, _small(c), **c.params)),
    "smallcnn": ("classification", lambda c, w: build_smallcnn(c.in_channels, c.out_channels, **c.params)),
    "darts": (None, lambda c, w: build_darts(c)),
    "pruned": (None, lambda c, w: build_pruned(c)),  # params.base: the float model it was pruned from
    "int8": (None, lambda c, w: build_int8(c)),  # params.base: the float model it quantizes (CPU only)
}


class ModelConfig(BaseModel):
    """Everything needed to rebuild a network and feed it: saved as model.json beside the weights."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    task: Task
    classes: list[ClassSpec]
    in_channels: int
    input_size: tuple[int, int]
    params: dict[str, Any] = {}
    binary: bool = False  # one sigmoid output channel instead of num_classes softmax channels
    mean: list[float]
    std: list[float]
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def out_channels(self) -> int:
        return 1 if self.binary else self.num_classes


def create_model(config: ModelConfig, weights: str | None = None) -> nn.Module:
    """Build the network named in `config`; `weights` is a torchvision weights name or a state dict URI."""
    if config.name not in MODELS:
        hint = difflib.get_close_matches(config.name, list(MODELS), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ModelError(f"unknown model {config.name!r}{did_you_mean}; known models: {', '.join(MODELS)}")
    task, builder = MODELS[config.name]
    if task not in (None, config.task):
        raise ModelError(f"model {config.name!r} is a {task} model but the data is a {config.task} dataset")
    if config.binary and config.num_classes != 2:
        raise ModelError(f"a binary (sigmoid) head needs 2 classes, the data has {config.num_classes}")
    backbone = torchvision_weights(weights) if weights and is_torchvision_name(weights) else None
    try:
        model = builder(config, backbone)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build {config.name!r} with params {config.params}: {exc}") from None
    if weights and backbone is None:
        load_weights(model, load_state_dict(weights), weights)
    return model


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


__all__ = ["MODELS", "ModelConfig", "count_parameters", "create_model", "load_weights", "probabilities"]
