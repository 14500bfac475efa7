"""U-Net (Ronneberger et al., 2015) with configurable depth, width and upsampling.

The aerial seed used a Keras U-Net; this one is the same shape, sized by `depth` (number of
down-sampling steps) and `width` (channels of the first level, doubled at each step) so one
builder serves a 100k-parameter quickstart model and a full-size aerial model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from segflow.models.model_config import ModelConfig


class _DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout) if dropout else nn.Identity(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


@torch.fx.wrap  # a leaf for torch.fx: its shape test would stop symbolic tracing (quantization, pruning)
def _pad_to(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Odd input sizes: pad the upsampled map up to its skip's size."""
    if x.shape[-2:] == skip.shape[-2:]:
        return x
    return F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))


class _Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mode: str, dropout: float):
        super().__init__()
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, in_channels // 2, 1),
            )
        self.conv = _DoubleConv(in_channels, out_channels, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, _pad_to(self.up(x), skip)], dim=1))


class UNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, depth: int = 4, width: int = 32,
                 upsampling: str = "transpose", dropout: float = 0.0):
        super().__init__()
        if not 1 <= depth <= 6:
            raise ValueError(f"unet depth must be 1..6, got {depth}")
        if upsampling not in ("transpose", "bilinear"):
            raise ValueError(f"unet upsampling must be 'transpose' or 'bilinear', got {upsampling!r}")
        widths = [width * 2**i for i in range(depth + 1)]
        self.stem = _DoubleConv(in_channels, widths[0], 0.0)
        self.down = nn.ModuleList(_DoubleConv(widths[i], widths[i + 1], dropout) for i in range(depth))
        self.up = nn.ModuleList(
            _Up(widths[i + 1], widths[i], upsampling, dropout) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)


def build_unet(config: ModelConfig, weights=None) -> nn.Module:
    """The `unet` registry builder (no pretrained backbone: `weights` is unused)."""
    return UNet(config.in_channels, config.out_channels, **config.params)
