"""COCO instances (images folder + instances JSON) turned into semantic masks via pycocotools.

Classes are background + the kept categories (`data.categories`: "voc" for the 20 PASCAL VOC
classes, or COCO category names), class i+1 being the i-th name. Semantic mask rule: the
image's annotations of kept categories are drawn largest area first, so smaller objects
overwrite larger ones; an `iscrowd` annotation is drawn as ignore_index; pixels of other
categories, and unannotated pixels, are background. Items are the images with at least one
annotation of a kept category, by image id. The JSON is parsed once per reader.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from segflow.config.recipe import ClassSpec
from segflow.data.base import Reader, Sample, SourceItem, read_rgb
from segflow.errors import ConfigError, DataError

# The 20 PASCAL VOC classes in VOC order, by their COCO names.
VOC_CATEGORIES = (
    "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "dining table", "dog", "horse", "motorcycle", "person", "potted plant", "sheep", "couch",
    "train", "tv",
)


class CocoReader(Reader):
    def __init__(self, config, root: Path | None):
        super().__init__(config, root)
        self._api = None

    def layout_hint(self) -> str:
        return (
            f"images in '{self.config.images}/' and the instances JSON at "
            f"'{self.config.annotations}', both relative to the dataset root"
        )

    def category_names(self) -> list[str]:
        categories = self.config.categories
        names = list(VOC_CATEGORIES) if categories == "voc" else list(categories)
        if not names or len(set(names)) < len(names):
            raise ConfigError(f"data.categories {names} must list distinct COCO category names, or be 'voc'")
        return names

    def classes(self) -> list[ClassSpec]:
        return [ClassSpec(name="background")] + [ClassSpec(name=n) for n in self.category_names()]

    def _json_path(self) -> Path:
        return self.root / self.config.annotations

    def _coco(self):
        if self._api is None:
            self._api = _load_coco(self._json_path())
        return self._api

    def _class_of_category(self) -> dict[int, int]:
        """COCO category id -> class index, refusing names the JSON does not define."""
        by_name = {cat["name"]: cat_id for cat_id, cat in self._coco().cats.items()}
        unknown = [name for name in self.category_names() if name not in by_name]
        if unknown:
            raise ConfigError(
                f"data.categories names {', '.join(map(repr, unknown))}, not categories of "
                f"{self._json_path()}; valid names: {', '.join(sorted(by_name))}"
            )
        return {by_name[name]: i + 1 for i, name in enumerate(self.category_names())}

    def scan(self) -> list[SourceItem]:
        images = self.require_dir(self.root / self.config.images, "images")
        image_ids = self._annotated_image_ids()[: self.config.max_images]
        items = [self._item(images, image_id) for image_id in image_ids]
        missing = [str(item.files[0]) for item in items if not item.files[0].is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) listed in {self._json_path()} are not on disk: "
                f"{'; '.join(missing[:5])}; download the images that belong to this JSON into {images}"
            )
        return items

    def _annotated_image_ids(self) -> list[int]:
        """Ids of the images with at least one annotation of a kept category, ascending."""
        coco = self._coco()
        kept = list(self._class_of_category())
        image_ids = sorted({ann["image_id"] for ann in coco.loadAnns(coco.getAnnIds(catIds=kept))})
        if not image_ids:
            raise DataError(
                f"no image in {self._json_path()} has an annotation of the kept categories "
                f"({', '.join(self.category_names())}); choose other data.categories"
            )
        orphans = [str(i) for i in image_ids if i not in coco.imgs]
        if orphans:
            raise DataError(
                f"{self._json_path()} annotates image ids missing from its 'images' list "
                f"({', '.join(orphans[:5])}); re-download the annotations"
            )
        return image_ids

    def _item(self, images: Path, image_id: int) -> SourceItem:
        image_path = images / self._coco().imgs[image_id]["file_name"]
        return SourceItem(id=str(image_id), group=str(image_id), files=(image_path, self._json_path()))

    def load(self, item: SourceItem) -> Sample:
        image_path = item.files[0]
        image = read_rgb(image_path)
        mask = self._semantic_mask(int(item.id))
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{self._json_path()} gives image {image_path.name} as {mask.shape[1]}x{mask.shape[0]} "
                f"but the file is {image.shape[1]}x{image.shape[0]}; use the JSON that belongs to "
                "these images"
            )
        return Sample(image=image, target=mask)

    def _semantic_mask(self, image_id: int) -> np.ndarray:
        coco = self._coco()
        class_of = self._class_of_category()
        info = coco.imgs[image_id]
        mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
        annotations = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=list(class_of))),
                             key=lambda ann: ann["id"])
        drawn = [(coco.annToMask(ann).astype(bool), ann) for ann in annotations]
        for region, ann in sorted(drawn, key=lambda pair: -int(pair[0].sum())):
            mask[region] = self.config.ignore_index if ann.get("iscrowd", 0) else class_of[ann["category_id"]]
        return mask


def _load_coco(path: Path):
    """Parse the instances JSON and index it, translating every failure into a DataError."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ConfigError(
            "data format 'coco' needs pycocotools, which is not installed; pip install 'segflow[coco]'"
        ) from None
    if not path.is_file():
        raise DataError(
            f"COCO annotations {path} do not exist; set data.annotations to the instances JSON "
            "(relative to the dataset root), e.g. annotations/instances_train2017.json"
        )
    try:
        with path.open(encoding="utf-8") as handle:
            dataset = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a readable JSON file ({exc}); re-download the annotations") from None
    if not isinstance(dataset, dict) or not {"images", "annotations", "categories"} <= dataset.keys():
        raise DataError(f"{path} is not a COCO instances file (needs images, annotations and categories)")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco
