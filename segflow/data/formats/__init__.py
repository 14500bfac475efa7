"""The readers of dataset formats: the recipe's `data.format` -> the reader that understands it.

The table is segflow.config.recipe.FORMATS (the recipe schema is built from it); each entry
names its reader by import path, imported here when a recipe asks for that format.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from segflow.config.recipe import FORMATS
from segflow.data.base import Reader
from segflow.errors import ConfigError


def make_reader(config, root: Path | None) -> Reader:
    """The reader for `config.format` over the dataset at `root`."""
    try:
        module, name = FORMATS[config.format].reader.split(":")
    except KeyError:
        raise ConfigError(
            f"unknown data format {config.format!r}; known formats: {', '.join(FORMATS)}"
        ) from None
    reader_cls = getattr(importlib.import_module(module), name)
    if root is None and reader_cls.needs_root:
        raise ConfigError(
            f"data format {config.format!r} needs the dataset folder: pass --data PATH or set data.path"
        )
    return reader_cls(config, root)
