"""prep: deterministic versioned artifacts, reuse, nothing published on error, S3 output."""

import json

import numpy as np
import pytest
from PIL import Image

from segflow.config import load_recipe, parse_recipe
from segflow.data import open_dataset, prep
from segflow.errors import DataError
from segflow.progress import SILENT
from segflow.store import list_versions, open_store


def quick(**overrides):
    return load_recipe("quickstart", [f"{k}={v}" for k, v in overrides.items()])


def test_synthetic_prep_writes_a_complete_version(tmp_path):
    result = prep(quick(**{"data.num_images": 20}), None, str(tmp_path / "ds"), progress=SILENT)
    manifest = result.manifest
    assert not result.reused and result.version == manifest.dataset_hash[:16]
    assert manifest.splits["train"].samples == 15 and manifest.splits["val"].samples == 5
    assert "test" not in manifest.splits
    assert abs(sum(manifest.splits["train"].fractions()) - 1) < 1e-9
    dataset = open_dataset(str(tmp_path / "ds"))
    images, targets = dataset.arrays("train")
    assert images.shape == (15, 64, 64, 3) and targets.shape == (15, 64, 64) and images.dtype == np.uint8
    assert set(np.unique(targets)) <= {0, 1, 2, 3}
    on_disk = json.loads((tmp_path / "ds" / result.version / "manifest.json").read_text())
    assert on_disk["dataset_hash"] == manifest.dataset_hash


def test_same_inputs_same_hash_and_reuse(tmp_path):
    first = prep(quick(), None, str(tmp_path / "a"), progress=SILENT)
    again = prep(quick(), None, str(tmp_path / "a"), progress=SILENT)
    elsewhere = prep(quick(), None, str(tmp_path / "b"), progress=SILENT, force=True)
    assert again.reused and again.version == first.version
    assert elsewhere.manifest.dataset_hash == first.manifest.dataset_hash
    other = prep(quick(**{"data.seed": 5}), None, str(tmp_path / "a"), progress=SILENT)
    assert other.version != first.version
    assert [v.is_latest for v in list_versions(open_store(tmp_path / "a"))] == [False, True]


def test_corrupt_shard_is_detected_on_load(tmp_path):
    result = prep(quick(), None, str(tmp_path), progress=SILENT)
    shard = tmp_path / result.version / result.manifest.shards["train"][0].images
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match the manifest's sha256"):
        open_dataset(str(tmp_path)).arrays("train")


def aerial_fixture(root, n_images=4, size=(300, 260)):
    folder = root / "Semantic segmentation dataset" / "Tile 1"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(1, n_images + 1):
        Image.new("RGB", size, (100, 100, 100)).save(folder / "images" / f"image_part_{i:03d}.jpg")
        mask = np.zeros((size[1], size[0], 3), np.uint8)
        mask[:] = (0x84, 0x29, 0xF6)
        mask[:50] = (0x3C, 0x10, 0x98)
        Image.fromarray(mask).save(folder / "masks" / f"image_part_{i:03d}.png")
    return folder


def aerial_recipe(**data):
    return parse_recipe({"name": "aerial-t", "model": {"name": "unet"},
                         "data": {"format": "aerial", "layout": {"kind": "patch", "size": 128}, **data}})


def test_patches_of_one_image_stay_on_one_side(tmp_path):
    aerial_fixture(tmp_path / "raw", n_images=5)
    result = prep(aerial_recipe(split={"val_fraction": 0.4, "by": "group"}), tmp_path / "raw",
                  str(tmp_path / "out"), progress=SILENT)
    splits = result.manifest.splits
    # 300x260 -> 2x2 patches of 128; 5 images -> 3 train, 2 val
    assert (splits["train"].sources, splits["train"].samples) == (3, 12)
    assert (splits["val"].sources, splits["val"].samples) == (2, 8)
    assert result.manifest.sample_shape == (128, 128, 3)
    assert len(result.manifest.sources) == 10


def test_bad_items_are_all_reported_and_nothing_is_published(tmp_path):
    folder = aerial_fixture(tmp_path / "raw", n_images=4)
    Image.new("RGB", (10, 10), (0x84, 0x29, 0xF6)).save(folder / "masks" / "image_part_002.png")
    Image.new("RGB", (300, 260), (1, 2, 3)).save(folder / "masks" / "image_part_004.png")
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        prep(aerial_recipe(), tmp_path / "raw", str(out), progress=SILENT)
    message = str(err.value)
    assert "2 item(s) could not be prepared; nothing was written" in message
    assert "image_part_002.png is 10x10" in message and "#010203" in message
    assert not out.exists() or list(out.rglob("*")) == []


def test_prep_into_s3_and_open_from_s3(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGFLOW_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{bucket}/datasets/quick"
    result = prep(quick(**{"data.num_images": 12}), None, uri, progress=SILENT)
    assert prep(quick(**{"data.num_images": 12}), None, uri, progress=SILENT).reused
    dataset = open_dataset(uri)
    assert dataset.verified and dataset.version == result.version
    images, _ = dataset.arrays("val")
    assert images.shape[0] == result.manifest.splits["val"].samples


@pytest.mark.realdata
def test_real_aerial_prep(real_dataset, tmp_path):
    recipe = load_recipe("aerial")
    result = prep(recipe, real_dataset("dubai_aerial"), str(tmp_path), progress=SILENT)
    manifest = result.manifest
    assert manifest.splits["train"].sources + manifest.splits["val"].sources == 72
    assert manifest.ignored_colours.pixels["#000000"] > 545_000
    assert manifest.sample_shape == (256, 256, 3)


@pytest.mark.realdata
def test_real_fashion_prep(real_dataset, tmp_path):
    result = prep(load_recipe("fashion"), real_dataset("fashion_mnist"), str(tmp_path), progress=SILENT)
    splits = result.manifest.splits
    assert splits["train"].samples + splits["val"].samples == 60_000
    assert splits["test"].samples == 10_000
    assert result.manifest.sample_shape == (28, 28, 1)
