"""The `pruned` model: a float model with some layers rebuilt smaller, as `segflow compress` pruned them.

model.json names the `pruned` builder with the float model's config and the new size of
every layer that changed, in its constructor's terms:
`{"name": "pruned", "params": {"base": {...}, "ratio": 0.5, "layers": {"stem.0": {"out_channels": 8}, ...}}}`.
Rebuilding needs no NNI and no pruning code (segflow.compress.prune writes these params), so
the serving handler rebuilds a pruned model from this module alone.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from segflow.errors import ModelError
from segflow.models.model_config import ModelConfig
from segflow.models.registry import create_model
from segflow.models.traced import base_config

NAME = "pruned"
_CONV_ARGS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")
# The constructor arguments that describe each resizable layer type (bias: whether it has one).
LAYER_TYPES: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Conv2d: _CONV_ARGS,
    nn.ConvTranspose2d: (*_CONV_ARGS, "output_padding"),
    nn.BatchNorm2d: ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    nn.Linear: ("in_features", "out_features"),
}
SIZES = ("in_channels", "out_channels", "groups", "num_features", "in_features", "out_features")


def build_pruned(config: ModelConfig, weights=None) -> nn.Module:
    """The `pruned` registry builder: the base model with the recorded layers replaced by smaller ones.

    The weights come from the artifact's state dict: `weights` is unused.
    """
    layers = config.params.get("layers")
    if not isinstance(layers, dict):
        raise ModelError("pruned params hold no 'layers' mapping; take model.json from the artifact that "
                         "`segflow compress` wrote")
    model = create_model(base_config(config))
    for name, sizes in layers.items():
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"pruned params name layer {name!r}, which model {config.params['base']['name']!r} "
                             "does not have") from None
        model.set_submodule(name, _resized(layer, sizes))
    return model


def layer_arguments(layer: nn.Module) -> dict[str, Any]:
    """The constructor arguments that rebuild `layer` (one of LAYER_TYPES) as it is now."""
    args = {name: getattr(layer, name) for name in LAYER_TYPES[type(layer)]}
    if not isinstance(layer, nn.BatchNorm2d):
        args["bias"] = layer.bias is not None
    return args


def _resized(layer: nn.Module, sizes: dict[str, int]) -> nn.Module:
    if type(layer) not in LAYER_TYPES:
        raise ModelError(f"pruned params resize layer type {type(layer).__name__}; segflow rebuilds "
                         f"{', '.join(t.__name__ for t in LAYER_TYPES)}")
    unknown = set(sizes) - set(SIZES)
    if unknown:
        raise ModelError(f"pruned params set {sorted(unknown)} of a {type(layer).__name__}; only sizes can change")
    return type(layer)(**(layer_arguments(layer) | sizes))
