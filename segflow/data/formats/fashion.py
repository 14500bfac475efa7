"""Fashion-MNIST as distributed: the four IDX files, gzipped (`train-*`, `t10k-*`).

The official test set stays the test split; validation is carved out of the 60,000
training images by the recipe's split.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from segflow.config.recipe import ClassSpec
from segflow.data.base import Reader, Sample, SourceItem
from segflow.errors import DataError

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


class FashionReader(Reader):
    def __init__(self, config, root: Path | None):
        super().__init__(config, root)
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def layout_hint(self) -> str:
        return "a folder with " + ", ".join(name for pair in FILES.values() for name in pair)

    def classes(self) -> list[ClassSpec]:
        return [ClassSpec(name=name) for name in CLASS_NAMES]

    def scan(self) -> list[SourceItem]:
        self.require_dir(self.root, "dataset")
        items = []
        for part, (images_name, labels_name) in FILES.items():
            images, labels = self._read_pair(part, self.root / images_name, self.root / labels_name)
            files = (self.root / images_name, self.root / labels_name)
            split = "test" if part == "test" else None
            items += [SourceItem(id=f"{part}-{i:05d}", group=f"{part}-{i:05d}", files=files, split=split)
                      for i in range(len(labels))]
        return items

    def _read_pair(self, part: str, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
        if part not in self._arrays:
            images = _read_idx(images_path, IMAGES_MAGIC)
            labels = _read_idx(labels_path, LABELS_MAGIC)
            if len(images) != len(labels):
                raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                                f"{len(labels)} labels; re-download both files")
            if labels.size and labels.max() >= len(CLASS_NAMES):
                raise DataError(f"{labels_path} has label {labels.max()}; Fashion-MNIST labels are 0..9")
            self._arrays[part] = (images, labels)
        return self._arrays[part]

    def load(self, item: SourceItem) -> Sample:
        part, index = item.id.rsplit("-", 1)
        images, labels = self._arrays[part]
        return Sample(image=images[int(index)][..., None], target=int(labels[int(index)]))


def _read_idx(path: Path, magic: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} does not exist; Fashion-MNIST needs {path.name} (the official .gz file)")
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}); re-download it") from None
    if len(data) < 8 or struct.unpack(">I", data[:4])[0] != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (magic {magic}); re-download it")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, body has {body.size} bytes; re-download it")
    return body.reshape(dims)
