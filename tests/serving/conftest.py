"""Files the serving tests keep for people to look at (screenshots of the web page), listed after the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# out/ is the repository's ignored output folder; CI can publish this one as the run's artifacts.
REPOSITORY = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SEGFLOW_TEST_ARTIFACTS", REPOSITORY / "out" / "test-artifacts"))
KEPT: list[Path] = []


@pytest.fixture(scope="session")
def keep_artifact():
    """keep_artifact(name) -> a path under ARTIFACTS to write to; the paths written are listed at the end."""

    def path(name: str) -> Path:
        target = ARTIFACTS / name
        target.parent.mkdir(parents=True, exist_ok=True)
        KEPT.append(target)
        return target

    return path


def pytest_terminal_summary(terminalreporter):
    for path in KEPT:
        if path.exists():
            terminalreporter.write_line(f"[artifact] {path}")
