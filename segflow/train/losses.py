"""Loss functions by recipe name, from segmentation_models_pytorch and torch.

The aerial seed trained with Dice + Focal; Carvana's binary masks with BCE + Dice on a single
sigmoid channel. Every segmentation loss respects ignore_index so unlabelled pixels
(#000000 in the aerial masks, KITTI's black border) never push the model either way.
"""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss, SoftBCEWithLogitsLoss
from torch import nn

from segflow.errors import ConfigError

SEGMENTATION_LOSSES = ("cross_entropy", "dice", "focal", "dice_focal", "bce_dice")


class _Sum(nn.Module):
    def __init__(self, *losses: nn.Module):
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(loss(logits, target) for loss in self.losses)


class _BinaryBceDice(nn.Module):
    """BCE + Dice for a one-channel head; targets are 0/1 masks with ignore_index."""

    def __init__(self, ignore_index: int):
        super().__init__()
        self.bce = SoftBCEWithLogitsLoss(ignore_index=ignore_index)
        self.dice = DiceLoss(mode="binary", ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.unsqueeze(1).float()
        return self.bce(logits, target) + self.dice(logits, target)


def build_loss(name: str, task: str, ignore_index: int, class_weights: list[float] | None,
               num_classes: int) -> nn.Module:
    if class_weights is not None and len(class_weights) != num_classes:
        raise ConfigError(
            f"training.class_weights has {len(class_weights)} values but the dataset has {num_classes} classes"
        )
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
    if task == "classification":
        if name != "cross_entropy":
            raise ConfigError(f"training.loss {name!r} is a segmentation loss; classification uses cross_entropy")
        return nn.CrossEntropyLoss(weight=weight)
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
    if weight is not None:
        raise ConfigError(f"training.class_weights only apply to cross_entropy, not {name!r}")
    if name == "dice":
        return DiceLoss(mode="multiclass", ignore_index=ignore_index)
    if name == "focal":
        return FocalLoss(mode="multiclass", ignore_index=ignore_index)
    if name == "dice_focal":
        return _Sum(DiceLoss(mode="multiclass", ignore_index=ignore_index),
                    FocalLoss(mode="multiclass", ignore_index=ignore_index))
    if name == "bce_dice":
        if num_classes != 2:
            raise ConfigError(f"training.loss bce_dice is for binary masks; this dataset has {num_classes} classes")
        return _BinaryBceDice(ignore_index)
    raise ConfigError(f"unknown training.loss {name!r}; known: {', '.join(SEGMENTATION_LOSSES)}")
