"""Hyperparameter search over one recipe search space, with Ray Tune or NNI as the backend.

`tune` is the module of the `segflow tune` command (`tune.tune(recipe, out_uri)`, `tune.REPORT`);
a backend is a `SearchBackend` (`open_backend`) that returns one `TrialSummary` per trial, ranked
by `best_trial`. Other packages use these names only.

The names are loaded on first use: NNI's dispatcher imports this package on its way to a fixed
tuner (segflow.search.nni_tuners) and must connect within NNI's 10 s, so importing the package
must not import Ray, torch and training.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "SearchOutcome": "segflow.search.tune",
    "SearchBackend": "segflow.search.backend",
    "TrialSummary": "segflow.search.backend",
    "best_trial": "segflow.search.backend",
    "open_backend": "segflow.search.backend",
    "TrialSpec": "segflow.search.trial",
    "recipe_key": "segflow.search.trial",
}

__all__ = ["SearchBackend", "SearchOutcome", "TrialSpec", "TrialSummary", "best_trial", "open_backend", "recipe_key",
           "tune"]


def __getattr__(name: str):
    if name == "tune":
        return importlib.import_module("segflow.search.tune")
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return __all__
