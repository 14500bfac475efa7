"""Torch datasets over a prepared split, with augmentation from torchvision.transforms.v2.

Images stay uint8 until the batch is on the device: normalisation happens there (see
segflow.models.preprocess), which keeps worker-to-trainer copies four times smaller.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2


def segmentation_augment() -> v2.Transform:
    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()])


def classification_augment(size: int) -> v2.Transform:
    return v2.Compose([v2.RandomCrop(size, padding=max(2, size // 14)), v2.RandomHorizontalFlip()])


class ArrayDataset(Dataset):
    """(image CHW uint8, target) pairs from NHWC uint8 images and masks (NHW) or labels (N)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform: v2.Transform | None = None):
        self.images, self.targets, self.transform = images, targets, transform
        self.segmentation = targets.ndim == 3

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = tv_tensors.Image(torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1))
        if self.segmentation:
            target = tv_tensors.Mask(torch.from_numpy(np.array(self.targets[index])).long())
        else:
            target = int(self.targets[index])
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image.as_subclass(torch.Tensor), (target.as_subclass(torch.Tensor) if self.segmentation else target)
