"""How long work shows how far it has got: a reporter object passed once, down to whatever loops.

Prep, training and the DARTS search draw rich progress bars and print a line per epoch on the
CLI's terminal, and stay silent in tests, pipeline steps and search trials. Rather than a
`show_progress` flag threaded through every signature and tested at each use, the caller picks
a reporter (`TERMINAL` or `SILENT`) and the code that loops asks it for a console and bars.
A module of its own beside errors.py: data, train and compress all use it, so it sits below them.
"""

from __future__ import annotations

from typing import Protocol

import rich.progress
from rich.console import Console


class Progress(Protocol):
    """Where progress goes: `console` for lines (one per epoch), `bars` for live rich bars."""

    shown: bool  # False: nothing is drawn or printed, so work may skip what only feeds the display

    @property
    def console(self) -> Console: ...

    def bars(self, *columns: str | rich.progress.ProgressColumn) -> rich.progress.Progress: ...


class RichProgress:
    """Bars and lines on stderr (the CLI)."""

    shown = True

    def __init__(self) -> None:
        self.console = Console(stderr=True)

    def bars(self, *columns: str | rich.progress.ProgressColumn) -> rich.progress.Progress:
        return rich.progress.Progress(*columns, console=self.console, transient=True)


class SilentProgress:
    """Nothing at all (tests, pipeline steps, search trials)."""

    shown = False

    def __init__(self) -> None:
        self.console = Console(stderr=True, quiet=True)

    def bars(self, *columns: str | rich.progress.ProgressColumn) -> rich.progress.Progress:
        return rich.progress.Progress(*columns, console=self.console, disable=True, transient=True)


TERMINAL: Progress = RichProgress()
SILENT: Progress = SilentProgress()
