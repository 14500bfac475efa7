"""KITTI road as distributed: `data_road/training/image_2/<cat>_<NNNNNN>.png` (cat: um, umm, uu).

Ground truth is `training/gt_image_2/<cat>_road_<NNNNNN>.png`, colour-coded: magenta #FF00FF is
road, red #FF0000 is not road, black #000000 lies outside the valid area and becomes
ignore_index (counted for the manifest). Any other colour refuses the file. The `*_lane_*`
ground truth (um only) is a different task and is not read, nor is `testing/`, which has no
labels.
"""

from __future__ import annotations

import re
from pathlib import Path

from segflow.config.recipe import ClassSpec
from segflow.data.base import Reader, Sample, SourceItem

TOP_FOLDER = "data_road"
IMAGE_NAME = re.compile(r"^(um|umm|uu)_(\d+)\.png$")
OUTSIDE_VALID_AREA = "#000000"


class KittiRoadReader(Reader):
    def layout_hint(self) -> str:
        return (
            f"'{TOP_FOLDER}/training/image_2/<um|umm|uu>_NNNNNN.png' with ground truth in "
            "'training/gt_image_2/<um|umm|uu>_road_NNNNNN.png'"
        )

    def classes(self) -> list[ClassSpec]:
        return list(self.config.classes)

    def _training(self) -> Path:
        # Accept the folder that contains data_road or data_road itself.
        nested = self.root / TOP_FOLDER
        top = nested if nested.is_dir() else self.require_dir(self.root, "dataset")
        return self.require_dir(top / "training", "training")

    def scan(self) -> list[SourceItem]:
        training = self._training()
        images = self.require_dir(training / "image_2", "images")
        truths = self.require_dir(training / "gt_image_2", "ground truth")
        items, unpaired = [], []
        for image in sorted(images.iterdir()):
            match = IMAGE_NAME.match(image.name)
            if not match:
                continue
            category, number = match.groups()
            truth = truths / f"{category}_road_{number}.png"
            if not truth.is_file():
                unpaired.append(f"{image} (expected {truth})")
                continue
            item_id = image.stem
            items.append(SourceItem(id=item_id, group=item_id, files=(image, truth)))
        return self.checked(items, unpaired, images, "re-extract data_road.zip or remove those images")

    def load(self, item: SourceItem) -> Sample:
        return self.paired(item, self._mask)

    def _mask(self, path: Path):
        return self.colour_mask(
            path, [OUTSIDE_VALID_AREA], "error",
            fix="KITTI road ground truth holds only magenta, red and black; re-extract data_road.zip",
        )
