"""KittiRoadReader on tiny real PNG fixtures laid out as data_road.zip extracts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segflow.config.recipe import KittiRoadData
from segflow.data.formats.kitti_road import KittiRoadReader
from segflow.errors import DataError

WIDTH, HEIGHT = 12, 10
ROAD, NOT_ROAD, OUTSIDE = (255, 0, 255), (255, 0, 0), (0, 0, 0)
ROAD_ROWS, ROAD_COLS = slice(5, 10), slice(2, 10)
OUTSIDE_ROWS = slice(0, 2)


def truth_rgb() -> np.ndarray:
    rgb = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[:] = NOT_ROAD
    rgb[ROAD_ROWS, ROAD_COLS] = ROAD
    rgb[OUTSIDE_ROWS] = OUTSIDE
    return rgb


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, "RGB").save(path, "PNG")


def make_dataset(top: Path, ids=("um_000000", "umm_000001", "uu_000002")) -> Path:
    """`top` is the data_road folder."""
    noise = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for item_id in ids:
        category, number = item_id.split("_")
        write_png(top / "training" / "image_2" / f"{item_id}.png", noise)
        write_png(top / "training" / "gt_image_2" / f"{category}_road_{number}.png", truth_rgb())
    write_png(top / "training" / "gt_image_2" / "um_lane_000000.png", np.zeros((3, 3, 3), np.uint8))
    write_png(top / "testing" / "image_2" / "um_000099.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    return top


def reader(root: Path) -> KittiRoadReader:
    return KittiRoadReader(KittiRoadData(format="kitti_road"), root)


def test_classes():
    classes = KittiRoadReader(KittiRoadData(format="kitti_road"), None).classes()
    assert [(c.name, c.colour) for c in classes] == [("background", "#FF0000"), ("road", "#FF00FF")]


def test_scan_training_items_only(tmp_path):
    make_dataset(tmp_path / "data_road")
    items = reader(tmp_path).scan()
    assert [i.id for i in items] == ["um_000000", "umm_000001", "uu_000002"]
    assert [i.group for i in items] == ["um_000000", "umm_000001", "uu_000002"]
    training = tmp_path / "data_road" / "training"
    assert items[1].files == (training / "image_2" / "umm_000001.png", training / "gt_image_2" / "umm_road_000001.png")


def test_root_may_be_data_road_itself(tmp_path):
    top = make_dataset(tmp_path / "data_road")
    assert len(reader(top).scan()) == 3


def test_decodes_road_background_and_outside(tmp_path):
    make_dataset(tmp_path / "data_road", ids=("um_000000",))
    r = reader(tmp_path)
    sample = r.load(r.scan()[0])
    expected = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    expected[ROAD_ROWS, ROAD_COLS] = 1
    expected[OUTSIDE_ROWS] = 255
    assert sample.image.shape == (HEIGHT, WIDTH, 3) and sample.image.dtype == np.uint8
    assert sample.target.dtype == np.uint8
    np.testing.assert_array_equal(sample.target, expected)
    assert r.ignored.pixels == {"#000000": 2 * WIDTH}
    assert r.unknown.pixels == {}


def test_unknown_colour_is_refused(tmp_path):
    top = make_dataset(tmp_path / "data_road", ids=("uu_000002",))
    rgb = truth_rgb()
    rgb[9, 0] = (0, 255, 0)
    write_png(top / "training" / "gt_image_2" / "uu_road_000002.png", rgb)
    r = reader(top)
    with pytest.raises(DataError, match="uu_road_000002.png has mask colours") as err:
        r.load(r.scan()[0])
    assert "#00FF00 (1 px)" in str(err.value)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="training"):
        reader(tmp_path).scan()


def test_missing_ground_truth_folder(tmp_path):
    write_png(tmp_path / "training" / "image_2" / "um_000000.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match="gt_image_2"):
        reader(tmp_path).scan()


def test_image_without_ground_truth_is_listed(tmp_path):
    top = make_dataset(tmp_path / "data_road")
    (top / "training" / "gt_image_2" / "umm_road_000001.png").unlink()
    with pytest.raises(DataError, match="umm_road_000001.png") as err:
        reader(tmp_path).scan()
    assert "umm_000001.png" in str(err.value)


def test_empty_dataset(tmp_path):
    (tmp_path / "training" / "image_2").mkdir(parents=True)
    (tmp_path / "training" / "gt_image_2").mkdir()
    with pytest.raises(DataError, match="no images found"):
        reader(tmp_path).scan()


def test_ground_truth_of_another_size(tmp_path):
    top = make_dataset(tmp_path / "data_road", ids=("um_000000",))
    write_png(top / "training" / "gt_image_2" / "um_road_000000.png", truth_rgb()[:, :8])
    r = reader(top)
    with pytest.raises(DataError, match="um_road_000000.png is 8x10"):
        r.load(r.scan()[0])


def test_truncated_image(tmp_path):
    top = make_dataset(tmp_path / "data_road", ids=("um_000000",))
    image = top / "training" / "image_2" / "um_000000.png"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])  # the noise image's pixel data fills most of the file
    r = reader(top)
    with pytest.raises(DataError, match="um_000000.png is not a readable image"):
        r.load(r.scan()[0])
