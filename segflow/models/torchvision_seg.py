"""torchvision's DeepLabV3-ResNet50 and LR-ASPP-MobileNetV3 as plain logits-out segmenters.

torchvision returns {"out": logits, ...}; every segflow model returns the logits tensor, so
these wrappers unwrap it. Full-model weights (e.g. COCO_WITH_VOC_LABELS_V1) load as trained
and the last classifier layer is replaced when the class count differs; backbone-only
weights (ResNet50_Weights, MobileNet_V3_Large_Weights) initialise just the encoder.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
from torchvision.models.segmentation import deeplabv3_resnet50, lraspp_mobilenet_v3_large

from segflow.models.model_config import ModelConfig


class LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def build_deeplabv3(in_channels: int, num_classes: int, weights=None) -> nn.Module:
    if isinstance(weights, ResNet50_Weights) or weights is None:
        model = deeplabv3_resnet50(weights=None, weights_backbone=weights, num_classes=num_classes, aux_loss=False)
    else:
        model = deeplabv3_resnet50(weights=weights, aux_loss=None)
        model.aux_classifier = None
        if model.classifier[-1].out_channels != num_classes:
            model.classifier[-1] = nn.Conv2d(model.classifier[-1].in_channels, num_classes, 1)
    if in_channels != 3:
        conv = model.backbone.conv1
        model.backbone.conv1 = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    return LogitsOnly(model)


def build_lraspp(in_channels: int, num_classes: int, weights=None) -> nn.Module:
    if isinstance(weights, MobileNet_V3_Large_Weights) or weights is None:
        model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=weights, num_classes=num_classes)
    else:
        model = lraspp_mobilenet_v3_large(weights=weights)
        if model.classifier.low_classifier.out_channels != num_classes:
            head = model.classifier
            head.low_classifier = nn.Conv2d(head.low_classifier.in_channels, num_classes, 1)
            head.high_classifier = nn.Conv2d(head.high_classifier.in_channels, num_classes, 1)
    if in_channels != 3:
        first = model.backbone["0"][0]
        model.backbone["0"][0] = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False)
    return LogitsOnly(model)


def build_deeplabv3_resnet50(config: ModelConfig, weights=None) -> nn.Module:
    """The `deeplabv3_resnet50` registry builder."""
    return build_deeplabv3(config.in_channels, config.out_channels, weights, **config.params)


def build_lraspp_mobilenet_v3_large(config: ModelConfig, weights=None) -> nn.Module:
    """The `lraspp_mobilenet_v3_large` registry builder."""
    return build_lraspp(config.in_channels, config.out_channels, weights, **config.params)
