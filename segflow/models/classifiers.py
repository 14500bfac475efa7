"""Image classifiers for small grey images (Fashion-MNIST, 1x28x28) and larger colour ones.

torchvision's ResNets and VGG16 are built for 224x224 RGB: their stems shrink 28x28 to
nothing. For inputs under 64 px the stem becomes a stride-1 3x3 convolution without max-pool
(ResNet) and VGG's last pool is dropped; for any input the first layer takes `in_channels`.
`smallcnn` is a ~260k-parameter network that reaches 90%+ on Fashion-MNIST in minutes on a CPU.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18, resnet34, vgg16

from segflow.models.model_config import ModelConfig


def _resnet(depth: int, in_channels: int, num_classes: int, weights=None, small_input: bool = True) -> nn.Module:
    model = (resnet18 if depth == 18 else resnet34)(weights=weights)
    if small_input:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def _vgg16(in_channels: int, num_classes: int, weights=None, small_input: bool = True) -> nn.Module:
    model = vgg16(weights=weights)
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
    if small_input:
        model.features = model.features[:-1]  # 28 px survives four pools (28->1), not five
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Sequential(
        nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, num_classes)
    )
    return model


def _smallcnn(in_channels: int, num_classes: int, width: int = 32, dropout: float = 0.3) -> nn.Module:
    """conv-pool, conv-conv-pool, two dense layers: ~11M multiply-adds per 28x28 image."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_channels, width), nn.MaxPool2d(2),
        *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(2 * width * 49, 64), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(64, num_classes),
    )


def _small(config: ModelConfig) -> bool:
    return min(config.input_size) < 64


def build_resnet18(config: ModelConfig, weights=None) -> nn.Module:
    """The `resnet18` registry builder."""
    return _resnet(18, config.in_channels, config.out_channels, weights, _small(config), **config.params)


def build_resnet34(config: ModelConfig, weights=None) -> nn.Module:
    """The `resnet34` registry builder."""
    return _resnet(34, config.in_channels, config.out_channels, weights, _small(config), **config.params)


def build_vgg16(config: ModelConfig, weights=None) -> nn.Module:
    """The `vgg16` registry builder."""
    return _vgg16(config.in_channels, config.out_channels, weights, _small(config), **config.params)


def build_smallcnn(config: ModelConfig, weights=None) -> nn.Module:
    """The `smallcnn` registry builder (no pretrained weights: `weights` is unused)."""
    return _smallcnn(config.in_channels, config.out_channels, **config.params)
