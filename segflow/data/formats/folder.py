"""Any dataset laid out as `images/<name>.<ext>` + `masks/<name>.png`: the format for your own data.

Classes come from the recipe's data.classes or else from `classes.yaml` in the dataset folder.
If every class has a colour, masks are colour-coded and matched by exact colour; if none has,
masks are single-channel PNGs whose values are class indices (ignore_index allowed). Values
that are no class are refused, or with `unknown_colours: ignore` become ignore_index and are
counted as "index N".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from segflow.config.recipe import ClassSpec
from segflow.data.base import (
    Reader,
    Sample,
    SourceItem,
    open_image,
)
from segflow.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
CLASSES_FILE = "classes.yaml"
CLASSES_EXAMPLE = '- {name: background, colour: "#000000"}\n- {name: cat, colour: "#FF0000"}'


class FolderReader(Reader):
    def __init__(self, config, root: Path | None):
        super().__init__(config, root)
        self._classes: list[ClassSpec] | None = None

    def layout_hint(self) -> str:
        return (
            f"'images/<name>.<{'|'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}>' with masks in "
            f"'masks/<name>.png' and the classes in data.classes or '{CLASSES_FILE}'"
        )

    def classes(self) -> list[ClassSpec]:
        if self._classes is None:
            if self.config.classes is not None:
                classes, source = list(self.config.classes), "the recipe's data.classes"
            else:
                classes, source = _read_classes_file(self.root / CLASSES_FILE), str(self.root / CLASSES_FILE)
            _check_classes(classes, source)
            self._classes = classes
        return list(self._classes)

    def _colour_coded(self) -> bool:
        return self.classes()[0].colour is not None

    def scan(self) -> list[SourceItem]:
        images = self.require_dir(self.root / "images", "images")
        masks = self.require_dir(self.root / "masks", "masks")
        self.classes()  # refuse bad classes before reading any mask
        found = sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        _refuse_shared_stems(found)
        unpaired = [f"{image} (expected {masks / f'{image.stem}.png'})"
                    for image in found if not (masks / f"{image.stem}.png").is_file()]
        items = [SourceItem(id=p.stem, group=p.stem, files=(p, masks / f"{p.stem}.png")) for p in found]
        return self.checked(items, unpaired, images, "add the masks or remove those images")

    def load(self, item: SourceItem) -> Sample:
        return self.paired(item, self._colour_mask if self._colour_coded() else self._index_mask)

    def _colour_mask(self, path: Path) -> np.ndarray:
        return self.colour_mask(
            path, [], self.config.unknown_colours,
            fix="add them to the classes (data.classes or classes.yaml) or set data.unknown_colours: ignore",
        )

    def _index_mask(self, path: Path) -> np.ndarray:
        values = _read_index_values(path)
        ignore, num_classes = self.config.ignore_index, len(self.classes())
        found, pixels = np.unique(values, return_counts=True)
        strangers = [(int(v), int(n)) for v, n in zip(found, pixels, strict=True) if v >= num_classes and v != ignore]
        if strangers and self.config.unknown_colours == "error":
            listed = ", ".join(f"{v} ({n} px)" for v, n in strangers[:8])
            raise DataError(
                f"{path} has mask values that are no class index (0..{num_classes - 1}) nor "
                f"ignore_index {ignore}: {listed}; add the classes, fix the mask, or set "
                "data.unknown_colours: ignore"
            )
        for value, pixel_count in strangers:
            self.unknown.add(f"index {value}", pixel_count)
        known = (values < num_classes) | (values == ignore)
        return np.where(known, values, ignore).astype(np.uint8)


def _read_classes_file(path: Path) -> list[ClassSpec]:
    if not path.is_file():
        raise DataError(
            f"{path} does not exist and the recipe sets no data.classes; create {CLASSES_FILE} in the "
            f"dataset folder listing the classes in mask order, e.g.\n{CLASSES_EXAMPLE}\n"
            "(leave out every colour if the masks hold class indices)"
        )
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path} is not readable YAML ({exc}); fix it, e.g.\n{CLASSES_EXAMPLE}") from None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path} must be a non-empty list of classes, e.g.\n{CLASSES_EXAMPLE}")
    try:
        return [ClassSpec.model_validate(entry) for entry in entries]
    except ValidationError as exc:
        raise DataError(f"{path} has an invalid class ({exc}); fix it, e.g.\n{CLASSES_EXAMPLE}") from None


def _check_classes(classes: list[ClassSpec], source: str) -> None:
    if not classes:
        raise ConfigError(f"{source} lists no classes; list them in mask order, e.g.\n{CLASSES_EXAMPLE}")
    uncoloured = [c.name for c in classes if c.colour is None]
    if uncoloured and len(uncoloured) < len(classes):
        raise ConfigError(
            f"in {source}, classes {', '.join(uncoloured)} have no colour but the others have one; give "
            "every class a colour (colour-coded masks) or none (masks holding class indices)"
        )


def _refuse_shared_stems(images: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for image in images:
        if image.stem in seen:
            raise DataError(
                f"{seen[image.stem]} and {image} would share the mask {image.stem}.png; rename or "
                "remove one of them"
            )
        seen[image.stem] = image


def _read_index_values(path: Path) -> np.ndarray:
    """The class indices stored in a one-channel mask (palette indices for "P", not colours)."""
    with open_image(path) as img:
        if img.mode not in ("P", "L", "1", "I", "I;16"):
            raise DataError(
                f"{path} is a {img.mode} mask but no class has a colour, so masks must be "
                "single-channel PNGs holding class indices; save it as one, or give every class a colour"
            )
        return np.asarray(img).astype(np.int64)
