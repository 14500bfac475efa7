"""Registry of dataset formats: the recipe's `data.format` -> the reader that understands it."""

from __future__ import annotations

from pathlib import Path

from segflow.data.base import Reader
from segflow.data.formats.aerial import AerialReader
from segflow.data.formats.carvana import CarvanaReader
from segflow.data.formats.coco import CocoReader
from segflow.data.formats.fashion import FashionReader
from segflow.data.formats.folder import FolderReader
from segflow.data.formats.kitti_road import KittiRoadReader
from segflow.data.formats.synthetic import SyntheticReader
from segflow.errors import ConfigError

READERS: dict[str, type[Reader]] = {
    "synthetic": SyntheticReader,
    "aerial": AerialReader,
    "carvana": CarvanaReader,
    "kitti_road": KittiRoadReader,
    "coco": CocoReader,
    "fashion": FashionReader,
    "folder": FolderReader,
}


def make_reader(config, root: Path | None) -> Reader:
    """The reader for `config.format` over the dataset at `root`."""
    try:
        reader_cls = READERS[config.format]
    except KeyError:
        raise ConfigError(
            f"unknown data format {config.format!r}; known formats: {', '.join(READERS)}"
        ) from None
    if root is None and reader_cls is not SyntheticReader:
        raise ConfigError(
            f"data format {config.format!r} needs the dataset folder: pass --data PATH or set data.path"
        )
    return reader_cls(config, root)
