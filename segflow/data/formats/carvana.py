"""Carvana (Kaggle) as distributed: `train/<car>_<NN>.jpg` with `train_masks/<car>_<NN>_mask.gif`.

Masks are binary: a pixel is car (class 1) when its stored value is nonzero, else background.
The distributed GIFs are palette images holding indices 0/1 (black/white palette); masks that
were re-encoded as greyscale hold 0/255. Reading the stored value, not a palette colour or a
grey threshold, decodes both. A car's 16 views share a group so it never straddles a split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segflow.config.recipe import ClassSpec
from segflow.data.base import Reader, Sample, SourceItem, open_image
from segflow.errors import ConfigError


class CarvanaReader(Reader):
    def layout_hint(self) -> str:
        return "'train/<car>_<NN>.jpg' with masks in 'train_masks/<car>_<NN>_mask.gif'"

    def classes(self) -> list[ClassSpec]:
        classes = list(self.config.classes)
        if len(classes) != 2:
            raise ConfigError(
                f"data.classes lists {len(classes)} classes but Carvana masks are binary; "
                "give exactly two: background, then car"
            )
        return classes

    def scan(self) -> list[SourceItem]:
        images = self.require_dir(self.root / "train", "images")
        masks = self.require_dir(self.root / "train_masks", "masks")
        items, unpaired = [], []
        for image in sorted(images.glob("*.jpg")):
            mask = masks / f"{image.stem}_mask.gif"
            if not mask.is_file():
                unpaired.append(f"{image} (expected {mask})")
                continue
            car_id = image.stem.rsplit("_", 1)[0]
            items.append(SourceItem(id=image.stem, group=car_id, files=(image, mask)))
        return self.checked(items, unpaired, images, "unzip train_masks.zip next to train/ or remove those images")

    def load(self, item: SourceItem) -> Sample:
        return self.paired(item, lambda path: (_read_values(path) != 0).astype(np.uint8))


def _read_values(path: Path) -> np.ndarray:
    """The stored values of a one-channel mask: palette indices for "P", grey levels otherwise."""
    with open_image(path) as img:
        return np.asarray(img if img.mode in ("P", "L", "1") else img.convert("L"))
