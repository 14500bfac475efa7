"""What a test does when a real server or tool cannot be had here: skip saying why, or fail under SEGFLOW_REQUIRE_REAL.

A developer's laptop may lack root, Go or podman, and the suite should still run what it can. CI
must not pass that way: it sets SEGFLOW_REQUIRE_REAL=1, and every skip or stand-in that a missing
real server would cause becomes a failure naming what was missing and how to install it.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRED = os.environ.get("SEGFLOW_REQUIRE_REAL") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip with REASON, or fail with it when SEGFLOW_REQUIRE_REAL=1."""
    if REQUIRED:
        pytest.fail(f"SEGFLOW_REQUIRE_REAL=1, and {reason}", pytrace=False)
    pytest.skip(reason)
