"""CarvanaReader on tiny real JPEG + GIF fixtures laid out as the Kaggle download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segflow.config.recipe import CarvanaData, ClassSpec
from segflow.data.formats.carvana import CarvanaReader
from segflow.errors import ConfigError, DataError

WIDTH, HEIGHT = 12, 10
CAR = (slice(2, 6), slice(3, 9))  # rows 2..5, columns 3..8


def car_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[CAR] = 1
    return mask


def write_image(path: Path, size=(WIDTH, HEIGHT)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path, "JPEG")


def write_palette_mask(path: Path, mask: np.ndarray) -> None:
    """As distributed: a palette GIF holding indices 0/1 with a black/white palette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(mask, "P")
    img.putpalette([0, 0, 0, 255, 255, 255])
    img.save(path, "GIF")


def write_grey_mask(path: Path, mask: np.ndarray) -> None:
    """Re-encoded: a greyscale GIF holding 0/255."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask * 255, "L").save(path, "GIF", optimize=False)


def make_dataset(root: Path, cars=("car1", "car2"), views=(1, 2, 3)) -> Path:
    for car in cars:
        for view in views:
            stem = f"{car}_{view:02d}"
            write_image(root / "train" / f"{stem}.jpg")
            write_palette_mask(root / "train_masks" / f"{stem}_mask.gif", car_mask())
    return root


def reader(root: Path) -> CarvanaReader:
    return CarvanaReader(CarvanaData(format="carvana"), root)


def test_classes_are_background_and_car(tmp_path):
    assert [c.name for c in reader(tmp_path).classes()] == ["background", "car"]


def test_three_classes_are_refused(tmp_path):
    config = CarvanaData(format="carvana", classes=[ClassSpec(name=n) for n in ("a", "b", "c")])
    with pytest.raises(ConfigError, match="3 classes"):
        CarvanaReader(config, tmp_path).classes()


def test_scan_groups_the_views_of_one_car(tmp_path):
    items = reader(make_dataset(tmp_path, cars=("0cee2ade_x", "fff9b3a5373f"))).scan()
    assert len(items) == 6
    assert [i.id for i in items][:2] == ["0cee2ade_x_01", "0cee2ade_x_02"]
    assert {i.group for i in items} == {"0cee2ade_x", "fff9b3a5373f"}
    first = items[0]
    assert first.files == (tmp_path / "train" / "0cee2ade_x_01.jpg",
                           tmp_path / "train_masks" / "0cee2ade_x_01_mask.gif")


def test_palette_index_mask_decodes_to_car_pixels(tmp_path):
    make_dataset(tmp_path, cars=("car",), views=(1,))
    with Image.open(tmp_path / "train_masks" / "car_01_mask.gif") as img:
        assert img.mode == "P"
    r = reader(tmp_path)
    sample = r.load(r.scan()[0])
    assert sample.image.shape == (HEIGHT, WIDTH, 3) and sample.image.dtype == np.uint8
    assert sample.target.dtype == np.uint8
    np.testing.assert_array_equal(sample.target, car_mask())


def test_greyscale_mask_decodes_to_car_pixels(tmp_path):
    make_dataset(tmp_path, cars=("car",), views=(1,))
    mask_path = tmp_path / "train_masks" / "car_01_mask.gif"
    write_grey_mask(mask_path, car_mask())
    with Image.open(mask_path) as img:
        assert img.mode == "L"
    r = reader(tmp_path)
    np.testing.assert_array_equal(r.load(r.scan()[0]).target, car_mask())


def test_missing_train_folder(tmp_path):
    with pytest.raises(DataError, match="train"):
        reader(tmp_path).scan()


def test_missing_masks_folder(tmp_path):
    write_image(tmp_path / "train" / "car_01.jpg")
    with pytest.raises(DataError, match="train_masks"):
        reader(tmp_path).scan()


def test_image_without_mask_is_listed(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "train_masks" / "car2_03_mask.gif").unlink()
    with pytest.raises(DataError, match="car2_03_mask.gif") as err:
        reader(tmp_path).scan()
    assert "1 image(s) have no mask" in str(err.value)


def test_empty_dataset(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train_masks").mkdir()
    with pytest.raises(DataError, match="no images found"):
        reader(tmp_path).scan()


def test_mask_of_another_size(tmp_path):
    make_dataset(tmp_path, cars=("car",), views=(1,))
    write_image(tmp_path / "train" / "car_01.jpg", size=(WIDTH + 4, HEIGHT))
    r = reader(tmp_path)
    with pytest.raises(DataError, match="car_01_mask.gif is 12x10") as err:
        r.load(r.scan()[0])
    assert "16x10" in str(err.value)


def test_truncated_image(tmp_path):
    make_dataset(tmp_path, cars=("car",), views=(1,))
    image = tmp_path / "train" / "car_01.jpg"
    image.write_bytes(image.read_bytes()[:200])
    r = reader(tmp_path)
    with pytest.raises(DataError, match="car_01.jpg is not a readable image"):
        r.load(r.scan()[0])


def test_corrupt_mask(tmp_path):
    make_dataset(tmp_path, cars=("car",), views=(1,))
    (tmp_path / "train_masks" / "car_01_mask.gif").write_bytes(b"GIF89a not really")
    r = reader(tmp_path)
    with pytest.raises(DataError, match="car_01_mask.gif is not a readable image"):
        r.load(r.scan()[0])
