"""CocoReader on a tiny real instances JSON (polygons + an uncompressed crowd RLE) and JPEGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segflow.config.recipe import CocoData
from segflow.data.formats.coco import CocoReader
from segflow.errors import ConfigError, DataError

WIDTH, HEIGHT = 12, 10
PERSON, CAR, DOG = 15, 7, 12  # VOC class indices
COCO_IDS = {  # the real COCO ids of the VOC categories, plus kite (not a VOC class)
    "person": 1, "bicycle": 2, "car": 3, "motorcycle": 4, "airplane": 5, "bus": 6, "train": 7, "boat": 9,
    "bird": 16, "cat": 17, "dog": 18, "horse": 19, "sheep": 20, "cow": 21, "kite": 38, "bottle": 44,
    "chair": 62, "couch": 63, "potted plant": 64, "dining table": 67, "tv": 72,
}
CATEGORIES = [{"id": i, "name": name, "supercategory": "thing"} for name, i in COCO_IDS.items()]


def box(rows: slice, cols: slice) -> list[list[float]]:
    """A polygon that pycocotools rasterises to exactly mask[rows, cols]."""
    x0, x1, y0, y1 = cols.start, cols.stop, rows.start, rows.stop
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def crowd_rle(rows: slice, cols: slice) -> dict:
    """Uncompressed RLE as COCO stores crowds: run lengths over the column-major pixels."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[rows, cols] = 1
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    counts = runs.tolist() if flat[0] == 0 else [0] + runs.tolist()
    return {"counts": counts, "size": [HEIGHT, WIDTH]}


def annotation(ann_id, image_id, category_id, segmentation, area, iscrowd=0) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": segmentation,
            "area": float(area), "bbox": [0, 0, 1, 1], "iscrowd": iscrowd}


ANNOTATIONS = [
    # image 1: a small dog listed before the large person it stands in front of, a kite below
    annotation(10, 1, 18, box(slice(3, 6), slice(2, 7)), 15),
    annotation(11, 1, 1, box(slice(1, 8), slice(1, 10)), 63),
    annotation(12, 1, 38, box(slice(8, 10), slice(0, 12)), 24),
    # image 2: a large car, then a smaller crowd of people over its top left
    annotation(20, 2, 3, box(slice(2, 8), slice(1, 11)), 60),
    annotation(21, 2, 1, crowd_rle(slice(0, 4), slice(0, 6)), 24, iscrowd=1),
    # image 3: only a kite (not a VOC class); image 7: a person
    annotation(30, 3, 38, box(slice(0, 5), slice(0, 5)), 25),
    annotation(70, 7, 1, box(slice(0, 10), slice(0, 12)), 120),
]


def image_entry(image_id: int) -> dict:
    return {"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": WIDTH, "height": HEIGHT}


def make_dataset(root: Path, image_ids=(7, 1, 2, 3)) -> Path:
    (root / "train2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    for image_id in image_ids:
        Image.new("RGB", (WIDTH, HEIGHT), (image_id * 20, 80, 40)).save(root / "train2017" / f"{image_id:012d}.jpg")
    instances = {"info": {}, "licenses": [], "images": [image_entry(i) for i in image_ids],
                 "annotations": ANNOTATIONS, "categories": CATEGORIES}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(instances))
    return root


def reader(root: Path, **options) -> CocoReader:
    return CocoReader(CocoData(format="coco", **options), root)


def loaded(r: CocoReader, item_id: str) -> np.ndarray:
    item = next(i for i in r.scan() if i.id == item_id)
    return r.load(item).target


def test_voc_classes(tmp_path):
    names = [c.name for c in reader(tmp_path).classes()]
    assert len(names) == 21
    assert (names[0], names[PERSON], names[CAR], names[DOG], names[11]) == (
        "background", "person", "car", "dog", "dining table")


def test_scan_keeps_images_with_kept_annotations_by_id(tmp_path):
    items = reader(make_dataset(tmp_path)).scan()
    assert [i.id for i in items] == ["1", "2", "7"]
    assert [i.group for i in items] == ["1", "2", "7"]
    json_path = tmp_path / "annotations" / "instances_train2017.json"
    assert items[0].files == (tmp_path / "train2017" / "000000000001.jpg", json_path)
    assert reader(tmp_path).sources(items).count(json_path) == 1


def test_max_images(tmp_path):
    assert [i.id for i in reader(make_dataset(tmp_path), max_images=2).scan()] == ["1", "2"]


def test_smaller_objects_overwrite_larger_and_other_categories_are_background(tmp_path):
    r = reader(make_dataset(tmp_path))
    sample = r.load(r.scan()[0])
    expected = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    expected[1:8, 1:10] = PERSON
    expected[3:6, 2:7] = DOG
    assert sample.image.shape == (HEIGHT, WIDTH, 3) and sample.image.dtype == np.uint8
    assert sample.target.dtype == np.uint8
    np.testing.assert_array_equal(sample.target, expected)


def test_crowd_is_ignored(tmp_path):
    expected = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    expected[2:8, 1:11] = CAR
    expected[0:4, 0:6] = 255
    np.testing.assert_array_equal(loaded(reader(make_dataset(tmp_path)), "2"), expected)


def test_category_list_sets_class_order(tmp_path):
    r = reader(make_dataset(tmp_path), categories=["dog", "person"])
    assert [c.name for c in r.classes()] == ["background", "dog", "person"]
    assert [i.id for i in r.scan()] == ["1", "2", "7"]
    target = loaded(r, "1")
    assert target[4, 3] == 1 and target[1, 1] == 2 and target[9, 0] == 0


def test_json_is_read_once(tmp_path):
    r = reader(make_dataset(tmp_path))
    items = r.scan()
    (tmp_path / "annotations" / "instances_train2017.json").unlink()
    assert r.load(items[2]).target.max() == PERSON


def test_unknown_category(tmp_path):
    r = reader(make_dataset(tmp_path), categories=["dog", "sofa"])
    with pytest.raises(ConfigError, match="'sofa'") as err:
        r.scan()
    assert "valid names: airplane, bicycle, bird" in str(err.value) and "kite" in str(err.value)


def test_missing_json(tmp_path):
    (tmp_path / "train2017").mkdir()
    with pytest.raises(DataError, match="instances_train2017.json do not exist"):
        reader(tmp_path).scan()


def test_corrupt_json(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "annotations" / "instances_train2017.json").write_text('{"images": [')
    with pytest.raises(DataError, match="instances_train2017.json is not a readable JSON"):
        reader(tmp_path).scan()


def test_missing_images_folder(tmp_path):
    with pytest.raises(DataError, match="train2017"):
        reader(tmp_path).scan()


def test_image_missing_on_disk(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "train2017" / "000000000002.jpg").unlink()
    with pytest.raises(DataError, match="000000000002.jpg"):
        reader(tmp_path).scan()


def test_empty_dataset(tmp_path):
    with pytest.raises(DataError, match="no image in .*instances_train2017.json has an annotation"):
        reader(make_dataset(tmp_path), categories=["bicycle", "tv"]).scan()


def test_image_of_another_size(tmp_path):
    make_dataset(tmp_path)
    Image.new("RGB", (WIDTH, HEIGHT + 2)).save(tmp_path / "train2017" / "000000000007.jpg")
    r = reader(tmp_path)
    with pytest.raises(DataError, match="000000000007.jpg as 12x10 but the file is 12x12"):
        r.load(r.scan()[2])


def test_truncated_image(tmp_path):
    make_dataset(tmp_path)
    image = tmp_path / "train2017" / "000000000001.jpg"
    image.write_bytes(image.read_bytes()[:200])
    r = reader(tmp_path)
    with pytest.raises(DataError, match="000000000001.jpg is not a readable image"):
        r.load(r.scan()[0])


def test_repeated_category(tmp_path):
    with pytest.raises(ConfigError, match="distinct"):
        reader(tmp_path, categories=["dog", "dog"]).classes()


def test_json_that_is_not_an_instances_file(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "annotations" / "instances_train2017.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="instances_train2017.json is not a COCO instances file"):
        reader(tmp_path).scan()
