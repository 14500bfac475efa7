"""What `segflow tune` needs of a search library, and the one record of a trial that every backend returns.

Ray Tune and NNI differ in everything but this: refuse what they cannot run before any data is
read (`check`), then run the trials and say how each went (`run`). The caller ranks the trials
with `best_trial` and promotes the winner from its checkpoint, whichever backend ran it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from segflow.config.recipe import SearchSection
from segflow.evaluate import pick_best

if TYPE_CHECKING:
    from segflow.search.trial import TrialSpec


@dataclass(frozen=True)
class TrialSummary:
    """One trial, as a backend saw it or as the trial wrote it into its folder (trial.json)."""

    name: str  # the backend's trial id, also the trial's folder under WORK/trials
    params: dict
    curve: list[float]  # the search metric per epoch run (NNI: the intermediate results)
    status: str
    error: str | None = None  # why a failed trial failed, where the backend says
    final: float | None = None  # the value the trial ended with (NNI's final result), where the backend has one
    duration_s: float | None = None
    log_dir: Path | None = None  # NNI's trial.stdout and trial.stderr
    checkpoint: str | None = None  # the folder of the trial's best epoch
    history: list[dict] = field(default_factory=list)  # every epoch's scalars

    def best(self, mode: str) -> float:
        """The trial's best epoch on the search metric; nan when no epoch reported a finite one."""
        value = pick_best(self.curve, float, mode)
        return math.nan if value is None else value

    def score(self, mode: str) -> float:
        """What trials are ranked by: the final value where the trial reported one, else its best epoch."""
        return self.best(mode) if self.final is None else self.final

    def summary(self) -> dict:
        """The trial as search.json lists it; the checkpoint and epochs stay in the trial's folder."""
        return {"name": self.name, "params": self.params, "curve": self.curve, "status": self.status,
                "error": self.error}


def best_trial(trials: list[TrialSummary], mode: str) -> TrialSummary | None:
    """The trial with the best `score`; None when no trial has a finite one."""
    return pick_best(trials, lambda trial: trial.score(mode), mode)


class SearchBackend(ABC):
    """One search library behind `segflow tune`; `web_ui` is where its dashboard was, once `run` started it."""

    web_ui: str | None = None

    def __init__(self, search: SearchSection):
        self.search = search

    @abstractmethod
    def check(self) -> None:
        """Refuse (SearchError) an algorithm, scheduler or parameter type this backend cannot run."""

    @abstractmethod
    def run(self, spec: TrialSpec, workdir: Path) -> list[TrialSummary]:
        """Run (or resume) the search in `workdir`: every trial in start order, each with its checkpoint
        and epochs where it trained; a SearchError when no trial reported the search metric."""


def open_backend(search: SearchSection) -> SearchBackend:
    """The backend `search.backend` names; each is imported only when chosen (NNI and Ray Tune are heavy)."""
    if search.backend == "nni":
        from segflow.search.nni_backend import NniBackend

        return NniBackend(search)
    from segflow.search.ray_backend import RayBackend

    return RayBackend(search)
