"""Class colours for drawing masks: the dataset's own colours where it has them.

Aerial masks, KITTI ground truth and the synthetic set define a colour per class; others
(Carvana, COCO, Fashion-MNIST) get a fixed, distinguishable palette so figures, served mask
PNGs and overlays always use the same colour for the same class.
"""

from __future__ import annotations

import numpy as np

from segflow.config.recipe import ClassSpec

# Glasbey-like: adjacent indices are far apart in colour. Index 0 (usually background) is black.
FALLBACK = np.array([
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
    (255, 215, 180), (0, 0, 128), (128, 128, 128), (255, 255, 255),
], dtype=np.uint8)
IGNORE_COLOUR = (255, 255, 255)


def palette(classes: list[ClassSpec]) -> np.ndarray:
    """(num_classes, 3) uint8: each class's own colour, else a fallback colour by index."""
    colours = np.zeros((len(classes), 3), dtype=np.uint8)
    for i, cls in enumerate(classes):
        if cls.colour:
            colours[i] = [int(cls.colour[j : j + 2], 16) for j in (1, 3, 5)]
        else:
            colours[i] = FALLBACK[i % len(FALLBACK)]
    return colours


def colourise(mask: np.ndarray, colours: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """HxW class indices -> HxWx3 RGB; ignored pixels white."""
    lookup = np.zeros((256, 3), dtype=np.uint8)
    lookup[: len(colours)] = colours
    lookup[ignore_index] = IGNORE_COLOUR
    return lookup[mask]
