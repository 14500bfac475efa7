"""Structured channel pruning: NNI's L1-norm filter pruner, then NNI's ModelSpeedup to really remove channels.

Every Conv2d but the layers that produce the output loses `ratio` of its output channels
(those whose filters have the smallest L1 norm); ModelSpeedup then shrinks the layers fed by
them (BatchNorm, the next convolutions, transposed convolutions, concatenations), so the
pruned network is a smaller dense network, not a masked one. With torch 2.13 ModelSpeedup
needs the model's torch.fx graph (`graph_module=torch.fx.symbolic_trace(model)`, nni#5768).

A pruned artifact's model.json names the `pruned` builder with the float model's config and
the new size of every layer that changed, in its constructor's terms:
`{"name": "pruned", "params": {"base": {...}, "ratio": 0.5, "layers": {"stem.0": {"out_channels": 8}, ...}}}`;
the builder (segflow.models.pruned) builds the base model and replaces those layers, so the state
dict loads as usual.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from segflow.errors import ConfigError, ModelError
from segflow.models import ModelConfig
from segflow.models.pruned import LAYER_TYPES, NAME, SIZES, layer_arguments
from segflow.models.traced import check_traceable


def check_ratio(ratio: float) -> float:
    if not 0 < ratio < 1:
        raise ConfigError(f"pruning ratio {ratio} is out of range: give the fraction of channels to remove, "
                          "0 < ratio < 1 (e.g. prune:0.5)")
    return ratio


def prune(model: nn.Module, config: ModelConfig, ratio: float) -> tuple[nn.Module, ModelConfig]:
    """(the pruned float model, its `pruned` config); its weights are the kept channels' weights, not retrained."""
    check_ratio(ratio)
    if config.name == "int8":
        raise ModelError("an int8 model cannot be pruned; prune its float model, then quantize (prune:R+int8)")
    with warnings.catch_warnings():  # NNI 3.0 registers pytree nodes with an API torch 2.13 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        from nni.compression.pruning import L1NormPruner
        from nni.compression.speedup import ModelSpeedup

    original = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    pruned = copy.deepcopy(original)
    outputs = _output_layers(check_traceable(pruned, config, "pruning"))
    convs = [name for name, m in pruned.named_modules() if type(m) is nn.Conv2d and name not in outputs]
    if not convs:
        raise ModelError(f"model {config.name!r} has no convolution to prune besides its output layers "
                         f"({', '.join(sorted(outputs)) or 'none'})")
    pruner = L1NormPruner(pruned, [{"op_names": convs, "sparse_ratio": ratio}])
    _, masks = pruner.compress()
    pruner.unwrap_model()
    example = torch.randn(2, config.in_channels, *config.input_size)
    with _quiet_nni() as logger:
        ModelSpeedup(pruned, example, masks, graph_module=torch.fx.symbolic_trace(pruned),
                     logger=logger).speedup_model()
    base = {"name": config.name, "params": config.params}
    params = {"base": base, "ratio": ratio, "layers": _changed_layers(original, pruned)}
    return pruned.eval(), config.model_copy(update={"name": NAME, "params": params})


@contextlib.contextmanager
def _quiet_nni() -> Iterator[logging.Logger]:
    """NNI logs every layer it replaces, prints its mask bookkeeping, warns about masks it then resolves and
    reports each parameter-free layer it leaves as is (Identity) as an error: keep that off the terminal."""
    nni_logger = logging.getLogger("nni")
    level = nni_logger.level
    speedup_logger = logging.getLogger("segflow.compress.prune.speedup")
    speedup_logger.disabled = True
    nni_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield speedup_logger
    finally:
        nni_logger.setLevel(level)


def _output_layers(graph: torch.fx.GraphModule) -> set[str]:
    """The parametric layers nearest the output: their channels are the classes, never pruned."""
    modules = dict(graph.named_modules())
    stack = [node for node in graph.graph.nodes if node.op == "output"]
    seen, found = set(), set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module" and type(modules[node.target]) in LAYER_TYPES:
            found.add(node.target)
        else:
            stack.extend(node.all_input_nodes)
    return found


def _changed_layers(original: nn.Module, pruned: nn.Module) -> dict[str, dict[str, int]]:
    """{layer name: its size arguments that pruning changed}; refuses a changed layer it could not rebuild."""
    before = dict(original.named_modules())
    changed = {}
    for name, layer in pruned.named_modules():
        old = before.get(name)
        if type(layer) in LAYER_TYPES and type(old) is type(layer):
            new_args, old_args = layer_arguments(layer), layer_arguments(old)
            diff = {k: v for k, v in new_args.items() if v != old_args[k]}
            if set(diff) - set(SIZES):
                raise ModelError(f"pruning changed {sorted(set(diff) - set(SIZES))} of layer {name!r}")
            if diff:
                changed[name] = diff
        elif old is not None and _shapes(old) != _shapes(layer):
            raise ModelError(f"pruning resized layer {name!r} ({type(old).__name__}), which segflow cannot rebuild; "
                             f"layers it rebuilds: {', '.join(t.__name__ for t in LAYER_TYPES)}")
    return changed


def _shapes(layer: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in [*layer.parameters(recurse=False), *layer.buffers(recurse=False)]]
