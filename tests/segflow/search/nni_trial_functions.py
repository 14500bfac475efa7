"""Trial functions and a tuner that the NNI tests hand to real NNI processes by dotted name.

They live outside the test modules because NNI imports them in trial and dispatcher processes of
its own; the tests put this folder on sys.path and pass "nni_trial_functions:quadratic".
"""

from __future__ import annotations

from nni.tuner import Tuner

CRASH_MESSAGE = "segflow test tuner crashed on purpose"


def loss(params: dict) -> float:
    """A quadratic bowl with its minimum at x = 0.5, n = 1 (and the other parameters ignored)."""
    return (params["x"] - 0.5) ** 2 + 0.01 * params["n"]


def quadratic(params: dict, args: dict, report) -> float:
    """Reports two intermediate values; checks the budget Hyperband and BOHB must hand over."""
    if args.get("expects_budget"):
        assert 1 <= args["budget"] <= args["max_epochs"], args
    report(loss(params) + 1.0)
    report(loss(params) + 0.5)
    return loss(params)


def sleeps(params: dict, args: dict, report) -> float:
    """Long enough for a test to interrupt the search while it runs; touches args["started"] first."""
    import time
    from pathlib import Path

    if args.get("started"):
        Path(args["started"]).touch()
    time.sleep(args["seconds"])
    return loss(params)


def fails(params: dict, args: dict, report) -> float:
    raise ValueError("trial failed on purpose")


class CrashingTuner(Tuner):
    """Raises when NNI asks it for parameters, as a broken tuner would."""

    def update_search_space(self, search_space):
        self.search_space = search_space

    def generate_parameters(self, parameter_id, **kwargs):
        raise RuntimeError(CRASH_MESSAGE)

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        raise AssertionError("no trial can finish without parameters")
