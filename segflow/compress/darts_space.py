"""The DARTS search spaces in NNI 3.0's `nni.nas` API: the cell networks of segflow.models.darts with mutables.

Two spaces, picked by the recipe's task: `darts-seg` (encoder-decoder cells for segmentation)
and `darts-cls` (a stack of cells for Fashion-MNIST-sized classification). Every edge is a
LayerChoice over the candidate ops and every node with more than two possible predecessors
an InputChoice of two, so NNI's one-shot strategies (DARTS here) can relax and search them.
Labels are shared by all cells of one kind, so one exported architecture describes them all.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable

from torch import nn

from segflow.errors import ConfigError
from segflow.models.darts import SPACES, SpaceSize

if importlib.util.find_spec("pytorch_lightning") is None:  # nni.nas imports it, NNI does not declare it
    raise ConfigError("segflow nas needs pytorch-lightning for NNI's nas API and Lightning evaluator: "
                      "pip install --no-deps pytorch-lightning==2.6.6")

with warnings.catch_warnings():
    # NNI 3.0 predates torch 2.13 and warns about every torch.nn class it does not know; harmless here.
    warnings.simplefilter("ignore", RuntimeWarning)
    from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace


class _MutableChooser:
    """Answers the network's choices with NNI mutables (frozen NNI contexts turn them into the chosen module)."""

    def op(self, label: str, candidates: dict[str, Callable[[], nn.Module]]) -> nn.Module:
        return LayerChoice({name: build() for name, build in candidates.items()}, label=label)

    def inputs(self, label: str, n_candidates: int, n_chosen: int) -> tuple[list[int], nn.Module]:
        return list(range(n_candidates)), InputChoice(n_candidates, n_chosen, reduction="sum", label=label)


class DartsSpace(ModelSpace):
    """One NNI model space for a named space; its forward is the shared network's."""

    def __init__(self, space: str, in_channels: int, out_channels: int, size: SpaceSize):
        super().__init__()
        self.net = SPACES[space].network(in_channels, out_channels, size, _MutableChooser())

    def forward(self, x):
        return self.net(x)
