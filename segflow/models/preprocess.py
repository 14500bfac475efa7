"""Pixels in, tensors out: the one pre-processing path shared by training, evaluation and serving.

A model's ModelConfig records the mean and std it was trained with; serving reuses them, so a
served model sees exactly the input distribution it was trained on.
"""

from __future__ import annotations

import numpy as np
import torch

from segflow.models.model_config import ModelConfig


def channel_stats(images: np.ndarray, max_images: int = 2048, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..1 scale) of up to `max_images` training images."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(max_images, len(images)), replace=False)
    sample = np.asarray(images[np.sort(pick)], dtype=np.float64) / 255.0
    axes = tuple(range(sample.ndim - 1))
    std = np.maximum(sample.std(axis=axes), 1e-3)
    return sample.mean(axis=axes).tolist(), std.tolist()


def normalize(batch: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 NCHW (or CHW) -> float, scaled to 0..1 and standardised per channel."""
    shape = (-1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=batch.device).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=batch.device).view(shape)
    return (batch.float() / 255.0 - mean_t) / std_t


def image_to_input(image: np.ndarray, config: ModelConfig) -> torch.Tensor:
    """One HxWxC uint8 image -> a 1xCxHxW float tensor (channels-last memory) ready for the model."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return normalize(tensor, config.mean, config.std).unsqueeze(0).contiguous(memory_format=torch.channels_last)


def for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode in channels-last memory: 4-6x faster convolutions on CPU (oneDNN) than NCHW."""
    return model.eval().to(memory_format=torch.channels_last)
