"""The one trial record and the one ranking rule that both search backends (and `segflow tune`) share."""

import math

import pytest

from segflow.search.backend import TrialSummary, best_trial


def trial(name: str, curve: list[float], final: float | None = None) -> TrialSummary:
    return TrialSummary(name, {}, curve, "SUCCEEDED", final=final)


@pytest.mark.parametrize(("mode", "expected"), [("min", 0.2), ("max", 0.9)])
def test_a_trials_best_epoch_follows_the_mode_and_skips_non_finite_values(mode, expected):
    assert trial("a", [0.5, math.nan, 0.2, math.inf, 0.9, -math.inf]).best(mode) == expected


def test_a_trial_without_a_finite_epoch_has_no_best():
    assert math.isnan(trial("a", [math.nan]).best("max"))
    assert math.isnan(trial("a", []).best("min"))


@pytest.mark.parametrize(("mode", "expected"), [("min", "low"), ("max", "high")])
def test_the_best_trial_follows_the_mode_and_never_is_a_diverged_one(mode, expected):
    trials = [trial("diverged", [math.nan]), trial("low", [0.3, 0.1]), trial("high", [0.4, 0.8]),
              trial("inf", [math.inf if mode == "max" else -math.inf])]
    assert best_trial(trials, mode).name == expected


def test_a_final_value_ranks_the_trial_where_the_backend_reports_one():
    """NNI ranks by the value a trial ends with, which need not be one of its intermediate results."""
    trials = [trial("a", [0.1], final=0.9), trial("b", [0.5], final=0.2)]
    assert best_trial(trials, "min").name == "b"


def test_ties_go_to_the_first_trial_and_no_finite_score_means_no_best():
    assert best_trial([trial("first", [0.5]), trial("second", [0.5])], "max").name == "first"
    assert best_trial([trial("a", [math.nan]), trial("b", [])], "min") is None
