"""The command NNI's local training service runs for each trial: `python -m segflow.search.nni_trial SPEC`.

NNI starts every trial as a shell command in a process of its own. This module is that command:
it loads the trial function named in the spec file ("package.module:function"), calls it with
the tuner's parameters and the run's fixed arguments, and sends the results back through NNI's
trial SDK. Hyperband and BOHB add a `TRIAL_BUDGET` (epochs) to the parameters; it is moved to
`args["budget"]`, so `params` holds exactly the names of the search space.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import nni

from segflow.errors import SearchError

BUDGET_KEY = "TRIAL_BUDGET"

Report = Callable[..., None]
TrialFunction = Callable[[dict, dict, Report], float | None]


def load_trial(path: str) -> TrialFunction:
    """The function behind "package.module:function", or a SearchError that says what is wrong."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise SearchError(f"trial {path!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SearchError(
            f"trial module {module_name!r} cannot be imported ({error}); install it or put it on sys.path"
        ) from error
    function = getattr(module, attr, None)
    if not callable(function):
        raise SearchError(f"trial {path!r}: module {module_name!r} has no function {attr!r}")
    return function


def import_root(path: str) -> str:
    """The sys.path entry from which a fresh process imports the trial's module as this one did."""
    module = importlib.import_module(path.partition(":")[0])
    file = Path(module.__file__).resolve()
    depth = module.__name__.count(".") + (file.name == "__init__.py")
    return str(file.parents[depth])


class Reporter:
    """`report(value, final=False)` as a trial function sees it; the return value is the final metric."""

    def __init__(self):
        self.final: float | None = None

    def __call__(self, value: float, final: bool = False) -> None:
        if final:
            self.final = float(value)
            nni.report_final_result(self.final)
        else:
            nni.report_intermediate_result(float(value))

    def finish(self, returned: float | None) -> None:
        """Report the returned metric unless the trial already reported its final one."""
        if self.final is not None:
            return
        if returned is None:
            raise SearchError("the trial function returned None and reported no final metric; return the metric")
        self(returned, final=True)


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text())
    sys.path.insert(0, spec["import_root"])
    trial = load_trial(spec["trial"])
    params = nni.get_next_parameter()
    args = dict(spec["args"])
    if BUDGET_KEY in params:
        args["budget"] = params.pop(BUDGET_KEY)
    report = Reporter()
    report.finish(trial(params, args, report))


if __name__ == "__main__":
    main(sys.argv[1:])
