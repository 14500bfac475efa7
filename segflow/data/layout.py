"""Turn one loaded image into fixed-size samples: patches, a resize, or the image as it is.

Training needs every sample of a dataset to have one shape; this is where that is decided,
once, at prep time, so every later step reads the same pixels.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from segflow.config.recipe import KeepLayout, PatchLayout, ResizeLayout
from segflow.data.base import Sample
from segflow.errors import DataError


def apply_layout(layout, sample: Sample, item_id: str, expected_shape: tuple | None) -> Iterator[Sample]:
    if isinstance(layout, PatchLayout):
        yield from _patches(sample, layout.size, layout.stride or layout.size)
    elif isinstance(layout, ResizeLayout):
        yield _resize(sample, layout.size)
    elif isinstance(layout, KeepLayout):
        if expected_shape is not None and sample.image.shape != expected_shape:
            raise DataError(
                f"{item_id} is {sample.image.shape[1]}x{sample.image.shape[0]} but earlier images are "
                f"{expected_shape[1]}x{expected_shape[0]}; set data.layout to resize or patch"
            )
        yield sample
    else:  # pragma: no cover - the recipe's discriminated union admits only the three above
        raise TypeError(f"unknown layout {layout!r}")


def _patches(sample: Sample, size: int, stride: int) -> Iterator[Sample]:
    """Crop from the top-left to whole patches, then tile (the aerial seed's policy)."""
    height, width = sample.image.shape[:2]
    for y in range(0, height - size + 1, stride):
        for x in range(0, width - size + 1, stride):
            yield Sample(
                image=sample.image[y : y + size, x : x + size],
                target=sample.target[y : y + size, x : x + size],
            )


def _resize(sample: Sample, size: tuple[int, int]) -> Sample:
    height, width = size
    image = np.asarray(Image.fromarray(sample.image.squeeze()).resize((width, height), Image.BILINEAR))
    if image.ndim == 2:
        image = image[..., None]
    target = sample.target
    if isinstance(target, np.ndarray):
        target = np.asarray(Image.fromarray(target).resize((width, height), Image.NEAREST))
    return Sample(image=image, target=target)
