"""What int8 quantization and pruning share: a torch.fx trace of the float model, and the config it wraps.

Both work on the graph torch.fx records from one symbolic run of `forward`, so both need a
model whose forward has no Python control flow on tensor values; both save a config that
names their builder and keeps the float model's config under `params.base`.
"""

from __future__ import annotations

import torch
from torch import nn

from segflow.errors import ModelError
from segflow.models.model_config import ModelConfig


def check_traceable(model: nn.Module, config: ModelConfig, purpose: str) -> torch.fx.GraphModule:
    """The model's torch.fx graph, or a ModelError that names the model and what needed the trace."""
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError... from inside user code
        raise ModelError(
            f"model {config.name!r} cannot be traced with torch.fx, which {purpose} needs "
            f"({type(exc).__name__}: {exc}); its forward must not branch on tensor values "
            "(move such code into a function wrapped with torch.fx.wrap, as segflow's unet does)"
        ) from None


def base_config(config: ModelConfig) -> ModelConfig:
    """The config of the float model a compressed config wraps (`params.base`: name and params)."""
    base = config.params.get("base")
    if not isinstance(base, dict) or not isinstance(base.get("name"), str):
        raise ModelError(f"{config.name} params hold no 'base' model ({{name, params}}); take model.json from "
                         "the artifact that `segflow compress` wrote")
    return config.model_copy(update={"name": base["name"], "params": base.get("params", {})})
