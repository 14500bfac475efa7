"""FolderReader on tiny real image/mask fixtures: colour-coded and index-valued masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segflow.config.recipe import ClassSpec, FolderData
from segflow.data.formats.folder import FolderReader
from segflow.errors import ConfigError, DataError

WIDTH, HEIGHT = 12, 10
COLOURED_YAML = """\
- {name: background, colour: "#000000"}
- {name: cat, colour: "#FF0000"}
- {name: dog, colour: "#00FF00"}
"""
INDEXED_YAML = "- name: background\n- name: cat\n- name: dog\n"


def class_map() -> np.ndarray:
    target = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    target[1:4, 2:6] = 1
    target[6:9, 5:11] = 2
    return target


def colour_mask(target: np.ndarray) -> np.ndarray:
    palette = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0)], dtype=np.uint8)
    return palette[target]


def write_image(path: Path, fmt: str, size=(WIDTH, HEIGHT)) -> None:
    Image.new("RGB", size, (120, 60, 30)).save(path, fmt)


def make_dataset(root: Path, classes_yaml: str | None = COLOURED_YAML, stems=("a", "b", "c")) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    formats = (("jpg", "JPEG"), ("png", "PNG"), ("tif", "TIFF"))
    for stem, (suffix, fmt) in zip(stems, formats):
        write_image(root / "images" / f"{stem}.{suffix}", fmt)
        mask = colour_mask(class_map()) if classes_yaml == COLOURED_YAML else class_map()
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    (root / "images" / "notes.txt").write_text("not an image")
    if classes_yaml is not None:
        (root / "classes.yaml").write_text(classes_yaml)
    return root


def reader(root: Path, **options) -> FolderReader:
    return FolderReader(FolderData(format="folder", **options), root)


def first_target(r: FolderReader) -> np.ndarray:
    return r.load(r.scan()[0]).target


def test_classes_from_classes_yaml(tmp_path):
    classes = reader(make_dataset(tmp_path)).classes()
    assert [(c.name, c.colour) for c in classes] == [("background", "#000000"), ("cat", "#FF0000"), ("dog", "#00FF00")]


def test_recipe_classes_win_over_classes_yaml(tmp_path):
    make_dataset(tmp_path)
    r = reader(tmp_path, classes=[ClassSpec(name="bg", colour="#000000"), ClassSpec(name="cat", colour="#FF0000")])
    assert [c.name for c in r.classes()] == ["bg", "cat"]


def test_scan_items_and_groups(tmp_path):
    items = reader(make_dataset(tmp_path)).scan()
    assert [i.id for i in items] == ["a", "b", "c"]
    assert [i.group for i in items] == ["a", "b", "c"]
    assert items[2].files == (tmp_path / "images" / "c.tif", tmp_path / "masks" / "c.png")


def test_colour_masks_decode(tmp_path):
    r = reader(make_dataset(tmp_path))
    sample = r.load(r.scan()[0])
    assert sample.image.shape == (HEIGHT, WIDTH, 3) and sample.image.dtype == np.uint8
    assert sample.target.dtype == np.uint8
    np.testing.assert_array_equal(sample.target, class_map())


def test_index_masks_decode(tmp_path):
    root = make_dataset(tmp_path, classes_yaml=INDEXED_YAML)
    target = class_map()
    target[0, 0] = 255
    Image.fromarray(target, "L").save(root / "masks" / "a.png")
    np.testing.assert_array_equal(first_target(reader(root)), target)


def test_palette_index_masks_use_indices_not_colours(tmp_path):
    root = make_dataset(tmp_path, classes_yaml=INDEXED_YAML)
    mask = Image.fromarray(class_map(), "P")
    mask.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10])
    mask.save(root / "masks" / "a.png")
    np.testing.assert_array_equal(first_target(reader(root)), class_map())


def test_unknown_colour_is_refused(tmp_path):
    root = make_dataset(tmp_path)
    rgb = colour_mask(class_map())
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(root / "masks" / "a.png")
    with pytest.raises(DataError, match=r"a.png has mask colours .*#010203 \(1 px\)"):
        first_target(reader(root))


def test_unknown_colour_ignored_and_counted(tmp_path):
    root = make_dataset(tmp_path)
    rgb = colour_mask(class_map())
    rgb[0, 0:2] = (1, 2, 3)
    Image.fromarray(rgb).save(root / "masks" / "a.png")
    r = reader(root, unknown_colours="ignore")
    assert first_target(r)[0, 0] == 255
    assert r.unknown.pixels == {"#010203": 2}


def test_out_of_range_index_is_refused(tmp_path):
    root = make_dataset(tmp_path, classes_yaml=INDEXED_YAML)
    target = class_map()
    target[0, 0] = 7
    Image.fromarray(target, "L").save(root / "masks" / "a.png")
    with pytest.raises(DataError, match=r"a.png has mask values .*7 \(1 px\)"):
        first_target(reader(root))


def test_out_of_range_index_ignored_and_counted(tmp_path):
    root = make_dataset(tmp_path, classes_yaml=INDEXED_YAML)
    target = class_map()
    target[0, 0:3] = 7
    Image.fromarray(target, "L").save(root / "masks" / "a.png")
    r = reader(root, unknown_colours="ignore")
    decoded = first_target(r)
    assert decoded[0, 0:3].tolist() == [255, 255, 255]
    assert r.unknown.pixels == {"index 7": 3}


def test_rgb_mask_without_class_colours_is_refused(tmp_path):
    root = make_dataset(tmp_path, classes_yaml=INDEXED_YAML)
    Image.fromarray(colour_mask(class_map())).save(root / "masks" / "a.png")
    with pytest.raises(DataError, match="a.png is a RGB mask"):
        first_target(reader(root))


def test_mixed_colours_are_refused(tmp_path):
    root = make_dataset(tmp_path, classes_yaml='- {name: background, colour: "#000000"}\n- name: cat\n')
    with pytest.raises(ConfigError, match="classes cat have no colour"):
        reader(root).classes()


def test_missing_classes_yaml_explains_it(tmp_path):
    root = make_dataset(tmp_path, classes_yaml=None)
    with pytest.raises(DataError, match="classes.yaml does not exist") as err:
        reader(root).scan()
    assert "- {name: background" in str(err.value)


def test_invalid_classes_yaml(tmp_path):
    root = make_dataset(tmp_path, classes_yaml="- {name: cat, colour: red}\n")
    with pytest.raises(DataError, match="classes.yaml has an invalid class"):
        reader(root).classes()


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="images"):
        reader(tmp_path).scan()


def test_image_without_mask_is_listed(tmp_path):
    root = make_dataset(tmp_path)
    (root / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b.png \(expected .*masks/b.png\)"):
        reader(root).scan()


def test_two_images_sharing_a_mask(tmp_path):
    root = make_dataset(tmp_path)
    write_image(root / "images" / "a.png", "PNG")
    with pytest.raises(DataError, match="share the mask a.png"):
        reader(root).scan()


def test_empty_dataset(tmp_path):
    root = make_dataset(tmp_path, stems=())
    with pytest.raises(DataError, match="no images found"):
        reader(root).scan()


def test_mask_of_another_size(tmp_path):
    root = make_dataset(tmp_path)
    write_image(root / "images" / "a.jpg", "JPEG", size=(WIDTH, HEIGHT + 1))
    with pytest.raises(DataError, match="a.png is 12x10 but its image .*a.jpg is 12x11"):
        first_target(reader(root))


def test_truncated_image(tmp_path):
    root = make_dataset(tmp_path)
    image = root / "images" / "a.jpg"
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(DataError, match="a.jpg is not a readable image"):
        first_target(reader(root))


def test_corrupt_index_mask(tmp_path):
    root = make_dataset(tmp_path, classes_yaml=INDEXED_YAML)
    (root / "masks" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="a.png is not a readable image"):
        first_target(reader(root))
