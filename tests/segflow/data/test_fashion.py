"""Fashion-MNIST reader: IDX .gz fixtures written byte for byte, then the real files."""

import gzip
import struct

import numpy as np
import pytest

from segflow.config.recipe import FashionData
from segflow.data.formats.fashion import FILES, FashionReader
from segflow.errors import DataError


def write_idx(path, array, magic):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_fashion(root, n_train=6, n_test=3):
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = FILES[part]
        write_idx(root / images_name, rng.integers(0, 255, (n, 28, 28)), 2051)
        write_idx(root / labels_name, np.arange(n) % 10, 2049)


def test_reads_images_labels_and_keeps_official_test_split(tmp_path):
    write_fashion(tmp_path)
    r = FashionReader(FashionData(format="fashion"), tmp_path)
    items = r.scan()
    assert len(items) == 9
    assert [i.split for i in items].count("test") == 3
    sample = r.load(items[4])
    assert sample.image.shape == (28, 28, 1) and sample.target == 4
    assert r.classes()[9].name == "Ankle boot"


def test_missing_truncated_and_mismatched_files(tmp_path):
    r = FashionReader(FashionData(format="fashion"), tmp_path)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz does not exist"):
        r.scan()
    write_fashion(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(5), 2049)
    with pytest.raises(DataError, match="holds 6 images but .* holds 5 labels"):
        FashionReader(FashionData(format="fashion"), tmp_path).scan()
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip file"):
        FashionReader(FashionData(format="fashion"), tmp_path).scan()
    with gzip.open(path, "wb") as handle:
        handle.write(struct.pack(">II", 2049, 100) + b"\x01\x02")
    with pytest.raises(DataError, match="truncated"):
        FashionReader(FashionData(format="fashion"), tmp_path).scan()


@pytest.mark.realdata
def test_real_fashion_mnist(real_dataset):
    r = FashionReader(FashionData(format="fashion"), real_dataset("fashion_mnist"))
    items = r.scan()
    assert len(items) == 70_000
    assert sum(i.split == "test" for i in items) == 10_000
