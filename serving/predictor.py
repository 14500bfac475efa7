"""The served computation without TorchServe: decoded images of any size in, masks or class scores out.

The TorchServe handler calls it once per dynamic batch; the benchmark calls it in-process, so
the two sides of the comparison run the same code. Each image is resized to the model's input
size the way prep resized the training data (Pillow bilinear), normalised by
`segflow.models.preprocess.image_to_input`, and predicted in one batch; each image's logits are
then upsampled (bilinear) back to that image's own size before the argmax, so images of
different sizes share one batch and every mask matches its image pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from segflow.data.palette import palette
from segflow.models import ModelConfig, probabilities
from segflow.models.artifact import load_model_dir
from segflow.models.preprocess import image_to_input


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWxC uint8 to size=(height, width) with Pillow's bilinear filter, as prep's resize layout does."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    source = Image.fromarray(image.squeeze(2) if image.shape[2] == 1 else image)
    resized = np.array(source.resize((width, height), Image.BILINEAR))  # writable: torch warns on read-only arrays
    return resized[:, :, None] if resized.ndim == 2 else resized


@dataclass
class Predictor:
    """A model and its config, ready to predict batches of decoded images."""

    model: nn.Module
    config: ModelConfig
    card: dict = field(default_factory=dict)

    @classmethod
    def from_dir(cls, folder: Path) -> Predictor:
        return cls(*load_model_dir(folder))

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.config.classes]

    @property
    def colours(self) -> np.ndarray:
        return palette(self.config.classes)

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        """One NxCxHxW input tensor at the model's input size."""
        return torch.cat([image_to_input(resize(image, self.config.input_size), self.config) for image in images])

    @torch.inference_mode()
    def segment(self, batch: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """HxW uint8 class indices per image, each at its original (height, width)."""
        logits = self.model(batch).float()
        return [self._mask(logits[i : i + 1], size) for i, size in enumerate(sizes)]

    def _mask(self, logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        full = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return probabilities(full, self.config.binary).argmax(dim=1)[0].to(torch.uint8).numpy()

    @torch.inference_mode()
    def classify(self, batch: torch.Tensor) -> np.ndarray:
        """NxC class probabilities."""
        return probabilities(self.model(batch).float(), self.config.binary).numpy()
