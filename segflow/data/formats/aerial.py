"""Dubai aerial imagery as distributed: `Semantic segmentation dataset/Tile N/{images,masks}`.

Masks are colour-coded (RGB or palette PNG). The colours are the recipe's class colours; the
`classes.json` shipped with the data lists annotation-tool colours found in no mask, so it is
not read. A few masks hold #000000 (mostly Tile 8/image_part_003.png): the recipe maps it to
ignore_index and the manifest records how many pixels that touched.
"""

from __future__ import annotations

from pathlib import Path

from segflow.config.recipe import ClassSpec
from segflow.data.base import Reader, Sample, SourceItem
from segflow.errors import DataError

TOP_FOLDER = "Semantic segmentation dataset"


class AerialReader(Reader):
    def layout_hint(self) -> str:
        return f"'{TOP_FOLDER}/Tile N/images/*.jpg' with masks in 'Tile N/masks/*.png'"

    def classes(self) -> list[ClassSpec]:
        return list(self.config.classes)

    def _top(self) -> Path:
        # Accept the folder that contains "Semantic segmentation dataset" or that folder itself.
        nested = self.root / TOP_FOLDER
        return nested if nested.is_dir() else self.require_dir(self.root, "dataset")

    def scan(self) -> list[SourceItem]:
        top = self._top()
        tiles = sorted((p for p in top.iterdir() if p.is_dir() and p.name.startswith("Tile")), key=_tile_order)
        if not tiles:
            raise DataError(f"{top} holds no 'Tile N' folders; expected {self.layout_hint()}")
        items, unpaired = [], []
        for tile in tiles:
            images = self.require_dir(tile / "images", "images")
            masks = self.require_dir(tile / "masks", "masks")
            for image in sorted(images.glob("*.jpg")):
                mask = masks / f"{image.stem}.png"
                if not mask.is_file():
                    unpaired.append(f"{image} (expected {mask})")
                    continue
                item_id = f"{tile.name}/{image.stem}"
                items.append(SourceItem(id=item_id, group=item_id, files=(image, mask)))
        return self.checked(items, unpaired, top, "add the masks or remove those images")

    def load(self, item: SourceItem) -> Sample:
        return self.paired(item, self._mask)

    def _mask(self, path: Path):
        return self.colour_mask(
            path, self.config.ignore_colours, self.config.unknown_colours,
            fix="add them to data.classes or data.ignore_colours, or set data.unknown_colours: ignore",
        )


def _tile_order(path: Path) -> tuple[int, str]:
    number = path.name.removeprefix("Tile").strip()
    return (int(number), path.name) if number.isdigit() else (10**9, path.name)
