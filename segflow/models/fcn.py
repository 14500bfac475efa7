"""FCN-8s on VGG16 features (Long et al., 2015), as the KITTI road proposal planned.

Scores from pool5 (after fc6/fc7 as convolutions), pool4 and pool3 are fused coarse to fine
and upsampled to the input size. `fc_width` (4096 in the paper) can be lowered to make the
model small enough for CPU experiments.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import vgg16

from segflow.models.model_config import ModelConfig

# Indices into torchvision's vgg16().features after each max-pool.
POOL3, POOL4, POOL5 = 17, 24, 31


class FCN8s(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, backbone_weights=None, fc_width: int = 4096):
        super().__init__()
        features = vgg16(weights=backbone_weights).features
        if in_channels != 3:
            features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        self.to_pool3 = features[:POOL3]
        self.to_pool4 = features[POOL3:POOL4]
        self.to_pool5 = features[POOL4:POOL5]
        self.fc = nn.Sequential(
            nn.Conv2d(512, fc_width, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(fc_width, fc_width, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
        )
        self.score5 = nn.Conv2d(fc_width, num_classes, 1)
        self.score4 = nn.Conv2d(512, num_classes, 1)
        self.score3 = nn.Conv2d(256, num_classes, 1)
        for layer in (self.score4, self.score3):  # start as plain FCN-32s; skips learn their share
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        score = self.score5(self.fc(self.to_pool5(pool4)))
        score = _up(score, pool4) + self.score4(pool4)
        score = _up(score, pool3) + self.score3(pool3)
        return F.interpolate(score, size=size, mode="bilinear", align_corners=False)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def build_fcn_vgg16(config: ModelConfig, weights=None) -> nn.Module:
    """The `fcn_vgg16` registry builder: `weights` initialise the VGG16 backbone."""
    return FCN8s(config.in_channels, config.out_channels, backbone_weights=weights, **config.params)
