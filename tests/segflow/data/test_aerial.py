"""Dubai aerial reader: tiny fixtures in the distributed layout, then the real 72 tiles."""

import numpy as np
import pytest
from PIL import Image

from segflow.config.recipe import AerialData, PatchLayout
from segflow.data.formats.aerial import AerialReader
from segflow.errors import DataError

BUILDING, LAND, ROAD = (0x3C, 0x10, 0x98), (0x84, 0x29, 0xF6), (0x6E, 0xC1, 0xE4)


def write_tile(root, tile=1, part=1, size=(40, 30), mask_mode="RGB", black_pixels=0, stray=None):
    folder = root / "Semantic segmentation dataset" / f"Tile {tile}"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(folder / "images" / f"image_part_{part:03d}.jpg")
    mask = np.zeros((h, w, 3), np.uint8)
    mask[:] = LAND
    mask[: h // 2, : w // 2] = BUILDING
    mask[h - 2 :, :] = ROAD
    if black_pixels:
        mask[0, :black_pixels] = 0
    if stray:
        mask[1, 0] = stray
    img = Image.fromarray(mask)
    if mask_mode == "P":
        img = img.quantize(colors=8, method=Image.Quantize.FASTOCTREE)
    img.save(folder / "masks" / f"image_part_{part:03d}.png")
    return folder


def reader(root, **overrides):
    return AerialReader(AerialData(format="aerial", **overrides), root)


def test_decodes_colours_to_class_indices_rgb_and_palette(tmp_path):
    write_tile(tmp_path, part=1)
    write_tile(tmp_path, part=2, mask_mode="P")
    r = reader(tmp_path)
    items = r.scan()
    assert [i.id for i in items] == ["Tile 1/image_part_001", "Tile 1/image_part_002"]
    for item in items:
        mask = r.load(item).target
        assert mask.shape == (30, 40)
        assert mask[0, 0] == 0 and mask[20, 30] == 1 and mask[29, 5] == 2  # building, land, road


def test_black_is_ignored_and_counted(tmp_path):
    write_tile(tmp_path, black_pixels=7)
    r = reader(tmp_path)
    mask = r.load(r.scan()[0]).target
    assert (mask[0, :7] == 255).all()
    assert r.ignored.pixels == {"#000000": 7} and r.ignored.files == {"#000000": 1}


def test_unknown_colour_is_an_error_naming_file_and_colour(tmp_path):
    write_tile(tmp_path, stray=(1, 2, 3))
    r = reader(tmp_path)
    with pytest.raises(DataError, match=r"image_part_001.png has mask colours .*#010203 \(1 px\)"):
        r.load(r.scan()[0])
    lenient = reader(tmp_path, unknown_colours="ignore")
    assert lenient.load(lenient.scan()[0]).target[1, 0] == 255
    assert lenient.unknown.pixels == {"#010203": 1}


def test_missing_folder_and_image_without_mask(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        reader(tmp_path / "nowhere").scan()
    folder = write_tile(tmp_path)
    (folder / "masks" / "image_part_001.png").unlink()
    with pytest.raises(DataError, match="1 image\\(s\\) have no mask: .*image_part_001.jpg"):
        reader(tmp_path).scan()


def test_mask_of_another_size_and_corrupt_jpeg(tmp_path):
    folder = write_tile(tmp_path)
    Image.new("RGB", (10, 10), LAND).save(folder / "masks" / "image_part_001.png")
    r = reader(tmp_path)
    with pytest.raises(DataError, match="mask .*image_part_001.png is 10x10 but its image .* is 40x30"):
        r.load(r.scan()[0])
    write_tile(tmp_path)
    jpg = folder / "images" / "image_part_001.jpg"
    jpg.write_bytes(jpg.read_bytes()[:60])
    with pytest.raises(DataError, match="image_part_001.jpg is not a readable image"):
        r.load(r.scan()[0])


def test_empty_dataset(tmp_path):
    (tmp_path / "Semantic segmentation dataset" / "Tile 1" / "images").mkdir(parents=True)
    (tmp_path / "Semantic segmentation dataset" / "Tile 1" / "masks").mkdir()
    with pytest.raises(DataError, match="no images found"):
        reader(tmp_path).scan()


@pytest.mark.realdata
def test_real_dubai_tiles(real_dataset):
    r = reader(real_dataset("dubai_aerial"), layout=PatchLayout(size=256))
    items = r.scan()
    assert len(items) == 72 and len(r.classes()) == 6
    tile8 = next(i for i in items if i.id == "Tile 8/image_part_003")
    mask = r.load(tile8).target
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4, 5, 255}
    assert r.ignored.pixels["#000000"] == 545_723
