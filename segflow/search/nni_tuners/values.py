"""Suggestions as NNI's trials and tuners expect them: Python scalars, quniform on its grid."""

from __future__ import annotations

import numpy as np


def plain(value):
    """`value` with numpy scalars replaced by Python ones, inside dicts and lists too."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


def quantize(value: float, low: float, high: float, q: float) -> float:
    """NNI's quniform: clip(round(value / q) * q, low, high)."""
    return float(np.clip(np.round(value / q) * q, low, high))


def quniform_specs(search_space: dict) -> dict[str, list]:
    """[low, high, q] of each quniform parameter, by name."""
    return {name: spec["_value"] for name, spec in search_space.items() if spec["_type"] == "quniform"}


def quantized(params: dict, specs: dict[str, list]) -> dict:
    """`params` (as Python scalars) with each quniform value on its grid."""
    return {**plain(params), **{name: quantize(params[name], *spec) for name, spec in specs.items()}}
