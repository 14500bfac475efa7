"""DARTS cell networks written once, built two ways: as NNI's search space and as a plain model.

Every choice the search makes goes through a `Chooser`: the search space (segflow/compress/darts_space.py)
answers with NNI's LayerChoice/InputChoice, the rebuilt `darts` model with the exported
architecture's pick. The network code is shared, so the retrained model is exactly the
architecture that was searched, and it holds no NNI module: its state dict loads with
`weights_only=True` in any process that can import torch.

A cell (Liu et al., 2019) turns its input(s) into `nodes` intermediate nodes; each node sums
two edges picked among all earlier states, and each edge applies one candidate operation.
All cells of one kind share their choices, as DARTS' normal and reduction cells do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from segflow.errors import ConfigError, ModelError
from segflow.models.model_config import ModelConfig

SPACE_VERSION = 1
CHOSEN_INPUTS = 2  # edges kept per node, as in DARTS


def _sep_conv(channels: int, kernel: int, dilation: int = 1) -> nn.Module:
    """ReLU, depthwise kxk (optionally dilated), pointwise 1x1, BN: DARTS' sep/dil conv, applied once."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                  groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
    )


class Zero(nn.Module):
    """The 'no edge' operation: zeros shaped like the input (its memory format kept)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class Sum(nn.Module):
    """Adds a node's edge outputs: what NNI's InputChoice(reduction='sum') does once frozen."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return sum(inputs[1:], inputs[0])


OPS: dict[str, Callable[[int], nn.Module]] = {
    "sep_conv_3x3": partial(_sep_conv, kernel=3),
    "sep_conv_5x5": partial(_sep_conv, kernel=5),
    "dil_conv_3x3": partial(_sep_conv, kernel=3, dilation=2),
    "dil_conv_5x5": partial(_sep_conv, kernel=5, dilation=2),
    "max_pool_3x3": lambda c: nn.MaxPool2d(3, stride=1, padding=1),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "skip_connect": lambda c: nn.Identity(),
    "zero": lambda c: Zero(),
}


@dataclass(frozen=True)
class SpaceSize:
    """How big a space is: resolution levels (one cell each), channels of the first, nodes per cell, ops."""

    cells: int = 2
    width: int = 16
    nodes: int = 3
    ops: tuple[str, ...] = tuple(OPS)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SpaceSize:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"unknown search-space setting(s) {unknown}; known: {', '.join(known)}")
        ops = params.get("ops", list(OPS))
        if not isinstance(ops, list | tuple):
            raise ConfigError(f"search-space setting ops={ops!r} must be a list of op names, e.g. [sep_conv_3x3, zero]")
        size = cls(**params | {"ops": tuple(ops)})
        for name, low, high in (("cells", 1, 6), ("width", 1, 512), ("nodes", 1, 8)):
            value = getattr(size, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"search-space setting {name}={value!r} must be an integer from {low} to {high}")
        _check_ops(size.ops)
        return size

    def as_params(self) -> dict[str, Any]:
        return asdict(self) | {"ops": list(self.ops)}

    def describe(self) -> str:
        return f"cells={self.cells}, width={self.width}, nodes={self.nodes}"


def _check_ops(ops: tuple[str, ...]) -> None:
    if not ops:
        raise ConfigError(f"the search space has no candidate ops (ops=[]); give at least one of: {', '.join(OPS)}")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ConfigError(f"unknown candidate op(s) {unknown}; choose among: {', '.join(OPS)}")
    if len(set(ops)) != len(ops):
        raise ConfigError(f"candidate ops {list(ops)} name an op twice; list each once")


class Chooser(Protocol):
    """Answers the network's choices: NNI mutables while searching, fixed picks once exported."""

    def op(self, label: str, candidates: dict[str, Callable[[], nn.Module]]) -> nn.Module: ...

    def inputs(self, label: str, n_candidates: int, n_chosen: int) -> tuple[list[int], nn.Module]: ...


class FixedChooser:
    """The exported architecture: one operation per edge, the chosen predecessors per node."""

    def __init__(self, architecture: dict[str, Any]):
        self.architecture = architecture

    def op(self, label: str, candidates: dict[str, Callable[[], nn.Module]]) -> nn.Module:
        return candidates[self.architecture[label]]()

    def inputs(self, label: str, n_candidates: int, n_chosen: int) -> tuple[list[int], nn.Module]:
        return sorted(self.architecture[label]), Sum()


def node_label(cell: str, node: int) -> str:
    return f"{cell}_node{node}"


def edge_label(node: str, source: int) -> str:
    return f"{node}_edge{source}"


def inputs_label(node: str) -> str:
    return f"{node}_inputs"


class Node(nn.Module):
    """Sums the operations on its chosen edges; an edge reads one earlier state of the cell."""

    def __init__(self, label: str, channels: int, n_predecessors: int, ops: tuple[str, ...], chooser: Chooser):
        super().__init__()
        if n_predecessors > CHOSEN_INPUTS:
            self.sources, self.select = chooser.inputs(inputs_label(label), n_predecessors, CHOSEN_INPUTS)
        else:
            self.sources, self.select = list(range(n_predecessors)), Sum()
        candidates = {name: partial(OPS[name], channels) for name in ops}
        self.edges = nn.ModuleList(chooser.op(edge_label(label, j), candidates) for j in self.sources)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return self.select([edge(states[j]) for edge, j in zip(self.edges, self.sources, strict=True)])


class Cell(nn.Module):
    """`nodes` nodes over the cell's inputs; a 1x1 conv merges the concatenated nodes back to `channels`."""

    def __init__(self, label: str, channels: int, n_inputs: int, size: SpaceSize, chooser: Chooser):
        super().__init__()
        self.n_inputs = n_inputs
        self.nodes = nn.ModuleList(Node(node_label(label, i), channels, n_inputs + i, size.ops, chooser)
                                   for i in range(size.nodes))
        self.merge = _conv_bn_relu(channels * size.nodes, channels, 1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        states = list(inputs)
        for node in self.nodes:
            states.append(node(states))
        return self.merge(torch.cat(states[self.n_inputs:], dim=1))


def cell_choices(label: str, n_inputs: int, size: SpaceSize) -> dict[str, list]:
    """Every choice a cell asks for, with its options: the contract an architecture must meet."""
    choices: dict[str, list] = {}
    for i in range(size.nodes):
        node, n_predecessors = node_label(label, i), n_inputs + i
        if n_predecessors > CHOSEN_INPUTS:
            choices[inputs_label(node)] = list(range(n_predecessors))
        choices.update({edge_label(node, j): list(size.ops) for j in range(n_predecessors)})
    return choices


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _widths(size: SpaceSize) -> list[int]:
    return [size.width * 2**level for level in range(size.cells)]


def _downsamplers(widths: list[int]) -> nn.ModuleList:
    """Between levels: 2x2 max-pool, then a 1x1 conv doubling the channels."""
    return nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), _conv_bn_relu(cin, cout, 1))
                         for cin, cout in zip(widths, widths[1:], strict=False))


class SegmentationNet(nn.Module):
    """U-shaped: an encoder cell per level (halving the size), a decoder cell per level back up, fed the skip."""

    def __init__(self, in_channels: int, out_channels: int, size: SpaceSize, chooser: Chooser):
        super().__init__()
        widths = _widths(size)
        self.stem = _conv_bn_relu(in_channels, widths[0], 3)
        self.down = _downsamplers(widths)
        self.encoder = nn.ModuleList(Cell("encoder", w, 1, size, chooser) for w in widths)
        self.up = nn.ModuleList(_conv_bn_relu(deep, w, 1) for w, deep in zip(widths, widths[1:], strict=False))
        self.decoder = nn.ModuleList(Cell("decoder", w, 2, size, chooser) for w in widths[:-1])
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.encoder[0](self.stem(x))]
        for down, cell in zip(self.down, self.encoder[1:], strict=True):
            skips.append(cell(down(skips[-1])))
        x = skips[-1]
        for level in reversed(range(len(self.decoder))):
            skip = skips[level]
            up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder[level](self.up[level](up), skip)
        return self.head(x)


class ClassificationNet(nn.Module):
    """A cell per level (the size halving between levels), global average pooling, a linear head."""

    def __init__(self, in_channels: int, out_channels: int, size: SpaceSize, chooser: Chooser):
        super().__init__()
        widths = _widths(size)
        self.stem = _conv_bn_relu(in_channels, widths[0], 3)
        self.down = _downsamplers(widths)
        self.cells = nn.ModuleList(Cell("normal", w, 1, size, chooser) for w in widths)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cells[0](self.stem(x))
        for down, cell in zip(self.down, self.cells[1:], strict=True):
            x = cell(down(x))
        return self.head(x)


@dataclass(frozen=True)
class Space:
    """A named search space: its task, its network, and its cell kinds (label -> number of cell inputs)."""

    task: str
    network: type[nn.Module]
    cells: Callable[[SpaceSize], dict[str, int]]

    def choices(self, size: SpaceSize) -> dict[str, list]:
        return {label: options for cell, n_inputs in self.cells(size).items()
                for label, options in cell_choices(cell, n_inputs, size).items()}


SPACES: dict[str, Space] = {
    "darts-seg": Space("segmentation", SegmentationNet,
                       lambda size: {"encoder": 1} | ({"decoder": 2} if size.cells > 1 else {})),
    "darts-cls": Space("classification", ClassificationNet, lambda size: {"normal": 1}),
}
SPACE_FOR_TASK = {space.task: name for name, space in SPACES.items()}


def space_for(task: str, size: SpaceSize) -> str:
    """The space that searches `task`; refuses a size that leaves nothing to choose."""
    space = SPACE_FOR_TASK[task]
    if not any(len(options) > 1 for options in SPACES[space].choices(size).values()):
        raise ConfigError(f"search space {space!r} with ops={list(size.ops)} ({size.describe()}) has nothing to "
                          "choose; give two or more candidate ops")
    return space


def check_architecture(space: str, size: SpaceSize, architecture: dict[str, Any]) -> None:
    """Refuse an architecture that was not searched in this space at this size, naming what differs."""
    expected = SPACES[space].choices(size)
    unexpected = sorted(set(architecture) - set(expected))
    missing = sorted(set(expected) - set(architecture))
    if unexpected or missing:
        details = [f"{len(v)} {what}, e.g. {v[0]!r}" for what, v in (("unexpected", unexpected),
                                                                        ("missing", missing)) if v]
        raise ModelError(f"the architecture does not fit space {space!r} v{SPACE_VERSION} ({size.describe()}): "
                         f"{'; '.join(details)} choice(s); it comes from another space or another space size; "
                         "build it with the space and params recorded in its architecture.json")
    for label, value in architecture.items():
        _check_choice(label, value, expected[label])


def _check_choice(label: str, value: Any, options: list) -> None:
    if label.endswith("_inputs"):
        ok = isinstance(value, list) and len(value) == CHOSEN_INPUTS and len(set(value)) == len(value) \
            and all(v in options for v in value)
        wanted = f"{CHOSEN_INPUTS} distinct predecessors among {options}"
    else:
        ok, wanted = value in options, f"one of {options}"
    if not ok:
        raise ModelError(f"architecture choice {label}={value!r} is not {wanted}")


def build_darts(config: ModelConfig, weights=None) -> nn.Module:
    """The `darts` registry builder: params {space, space_version, architecture, cells, width, nodes, ops}.

    A searched architecture has no pretrained weights: `weights` is unused.
    """
    params = dict(config.params)
    space, version = params.pop("space", None), params.pop("space_version", SPACE_VERSION)
    architecture = params.pop("architecture", None)
    if space not in SPACES:
        raise ModelError(f"darts params name space {space!r}; known spaces: {', '.join(SPACES)}; take the params "
                         "from the architecture.json that `segflow nas` wrote")
    if SPACES[space].task != config.task:
        raise ModelError(f"space {space!r} builds {SPACES[space].task} models but the data is a {config.task} "
                         f"dataset; search again with `segflow nas` on this recipe (space "
                         f"{SPACE_FOR_TASK[config.task]!r})")
    if version != SPACE_VERSION:
        raise ModelError(f"the architecture was searched in {space!r} v{version}; this segflow builds "
                         f"v{SPACE_VERSION}; search again with `segflow nas`")
    if not isinstance(architecture, dict):
        raise ModelError("darts params hold no 'architecture' mapping; take the params from the "
                         "architecture.json that `segflow nas` wrote")
    size = SpaceSize.from_params(params)
    check_architecture(space, size, architecture)
    return SPACES[space].network(config.in_channels, config.out_channels, size, FixedChooser(architecture))
