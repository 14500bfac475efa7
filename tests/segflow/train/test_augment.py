"""Batch-level augmentation: every sample gets its own draw, and masks move with their images."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from segflow.train.data import ArrayDataset, BatchAugment, classification_augment, segmentation_augment


def samples(count: int, segmentation: bool):
    images = torch.arange(count * 3 * 8 * 8, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(count, 3, 8, 8)
    targets = images[:, 0].long() if segmentation else torch.arange(count)
    return [(images[i], targets[i] if segmentation else int(targets[i])) for i in range(count)], images


def test_flips_are_drawn_per_sample_and_masks_follow_their_images():
    torch.manual_seed(0)
    batch, originals = samples(64, segmentation=True)
    images, masks = segmentation_augment()(batch)
    seen = set()
    for image, mask, original in zip(images, masks, originals, strict=True):
        candidates = {(h, v): original.flip(-1) if h else original for h in (0, 1) for v in (0, 1)}
        candidates = {key: (img.flip(-2) if key[1] else img) for key, img in candidates.items()}
        match = [key for key, img in candidates.items() if torch.equal(img, image)]
        assert match, "output is not a flip of its input"
        seen.add(match[0])
        assert torch.equal(mask, image[0].long()), "the mask was not flipped with its image"
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}, "every sample got the same flips"


def test_crops_are_shifted_windows_of_the_padded_image_with_their_own_offsets():
    torch.manual_seed(0)
    batch, originals = samples(64, segmentation=False)
    images, labels = BatchAugment(hflip=False, pad=2)(batch)
    assert images.shape == originals.shape and images.dtype == torch.uint8
    assert labels.tolist() == list(range(64))
    offsets = set()
    for image, original in zip(images, originals, strict=True):
        padded = F.pad(original, (2, 2, 2, 2))
        found = [(top, left) for top in range(5) for left in range(5)
                 if torch.equal(padded[:, top:top + 8, left:left + 8], image)]
        assert found, "output is not a window of the padded input"
        offsets.add(found[0])
    assert len(offsets) > 10


def test_classification_augment_pads_by_the_input_size():
    assert classification_augment(28) == BatchAugment(hflip=True, pad=2)
    assert classification_augment(224).pad == 16


def test_dataset_yields_uint8_chw_images():
    data = ArrayDataset(np.zeros((2, 5, 6, 3), np.uint8), np.array([1, 2]))
    image, label = data[1]
    assert image.shape == (3, 5, 6) and image.dtype == torch.uint8 and label == 2
