"""Smaller, faster models: pruning and int8 (`segflow compress`), knowledge distillation (`segflow distill`) and
DARTS architecture search (`segflow nas`), each reported side by side with the model it came from.

The face below is what other packages use; one module per command (`compress_command`,
`distill_command`, `nas_command`: not named like the face's functions, which a loaded submodule
would shadow), the rest private. Its names load on first use (PEP 562 `__getattr__`): `nas`
needs NNI's nas and pytorch-lightning, which `segflow compress` and `segflow distill` must not
require, and the int8 flow is imported only where something quantizes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segflow.compress.compare import table
    from segflow.compress.compress_command import compress
    from segflow.compress.distill_command import distill
    from segflow.compress.nas_command import nas, parse_space

# name -> (module, attribute)
_FACE = {
    "compress": ("segflow.compress.compress_command", "compress"),
    "distill": ("segflow.compress.distill_command", "distill"),
    "nas": ("segflow.compress.nas_command", "nas"),
    "parse_space": ("segflow.compress.nas_command", "parse_space"),
    "table": ("segflow.compress.compare", "table"),
    "DISTILL_REPORT": ("segflow.compress.distill_command", "REPORT"),
    "NAS_REPORT": ("segflow.compress.nas_command", "REPORT"),
}
__all__ = ["DISTILL_REPORT", "NAS_REPORT", "compress", "distill", "nas", "parse_space", "table"]


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _FACE[name]
    return getattr(importlib.import_module(module), attribute)
