"""Deterministic, seeded train/val/test split that keeps groups together.

Splitting by group (a source image, a car) stops neighbouring patches or other views of the
same object from leaking between train and validation, which inflates validation scores.
"""

from __future__ import annotations

import numpy as np

from segflow.config.recipe import SplitSpec
from segflow.data.base import SourceItem
from segflow.errors import DataError

SPLITS = ("train", "val", "test")


def assign_splits(items: list[SourceItem], spec: SplitSpec) -> dict[str, list[SourceItem]]:
    """Items by split; items whose distribution fixes their split (`item.split`) keep it."""
    result: dict[str, list[SourceItem]] = {name: [] for name in SPLITS}
    free = []
    for item in items:
        (result[item.split] if item.split else free).append(item)
    key = (lambda it: it.group) if spec.by == "group" else (lambda it: it.id)
    keys = sorted({key(it) for it in free})
    if not keys:
        return result
    order = [keys[i] for i in np.random.default_rng(spec.seed).permutation(len(keys))]
    n_val = _count(len(keys), spec.val_fraction)
    n_test = _count(len(keys), spec.test_fraction)
    if n_val + n_test >= len(keys):
        raise DataError(
            f"only {len(keys)} {spec.by}(s) to split; val_fraction={spec.val_fraction} and "
            f"test_fraction={spec.test_fraction} leave none for training; add data or lower them"
        )
    where = {k: "val" for k in order[:n_val]}
    where.update({k: "test" for k in order[n_val : n_val + n_test]})
    for item in free:
        result[where.get(key(item), "train")].append(item)
    return result


def _count(total: int, fraction: float) -> int:
    if fraction <= 0:
        return 0
    return max(1, round(total * fraction))
