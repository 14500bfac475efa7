"""Picking the best of several runs by one metric: the epochs of a training run, the trials of a search.

One rule everywhere, so a run and a search agree on what "best" means: the lowest value for mode
"min", the highest for "max", ties to the first; a value that is missing or not finite (a run
that diverged to NaN) never wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def pick_best(items: Iterable[T], value: Callable[[T], float | None], mode: str) -> T | None:
    """The item whose `value` is best under `mode` ("min" or "max"); None when no item has a finite one."""
    scored = [(score, item) for item in items if (score := value(item)) is not None and math.isfinite(score)]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda pair: pair[0])[1]
