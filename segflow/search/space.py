"""The recipe's search space in NNI's JSON form, and the checks a tuner needs before it starts.

Both backends read `SearchSection.space`; NNI wants `{"name": {"_type": ..., "_value": [...]}}`.
Each NNI tuner samples only some parameter types (NNI docs, hpo/search_space.rst, "Search Space
Types Supported by Each Tuner"), and the Gaussian-process tuners only numeric choices. Checking
here refuses a bad pairing before the NNI manager, the dispatcher or any trial starts, instead of
a tuner crashing minutes later inside the dispatcher.
"""

from __future__ import annotations

from collections.abc import Mapping

from segflow.config.recipe import ChoiceParam, QUniformParam, SearchParam
from segflow.errors import SearchError

ALL_TYPES = frozenset({"choice", "uniform", "loguniform", "quniform", "randint"})
NO_LOG_TYPES = frozenset({"choice", "uniform", "quniform", "randint"})

# The user-facing `search.algo` names for the NNI backend, in the order the docs list them.
SUPPORTED_TYPES: dict[str, frozenset[str]] = {
    "tpe": ALL_TYPES,
    "anneal": ALL_TYPES,
    "evolution": ALL_TYPES,
    "smac": ALL_TYPES,
    "hyperband": ALL_TYPES,
    "metis": NO_LOG_TYPES,
    "bohb": ALL_TYPES,
    "gp": ALL_TYPES,
    "dngo": ALL_TYPES,
}
NNI_ALGOS = tuple(SUPPORTED_TYPES)

# Gaussian-process and Bayesian-network models measure distances between values.
NUMERIC_CHOICE_ONLY = frozenset({"metis", "gp", "dngo"})


def to_nni(space: Mapping[str, SearchParam]) -> dict[str, dict]:
    """NNI's search-space JSON for a recipe's `search.space` (randint is [low, high), as in NNI and Ray)."""
    return {name: _to_nni(param) for name, param in space.items()}


def _to_nni(param: SearchParam) -> dict:
    if isinstance(param, ChoiceParam):
        return {"_type": "choice", "_value": list(param.values)}
    if isinstance(param, QUniformParam):
        return {"_type": "quniform", "_value": [param.low, param.high, param.q]}
    return {"_type": param.type, "_value": [param.low, param.high]}


def check_algo(algo: str) -> None:
    """Refuse a tuner name the NNI backend does not know, listing the ones it does."""
    if algo not in SUPPORTED_TYPES:
        raise SearchError(f"unknown NNI tuner {algo!r} (search.algo); use one of: {', '.join(NNI_ALGOS)}")


def check_algo_supports(algo: str, space: Mapping[str, SearchParam]) -> None:
    """Refuse an unknown tuner, an empty space, or a parameter the tuner cannot sample."""
    check_algo(algo)
    if not space:
        raise SearchError("search.space is empty; add at least one parameter to search over")
    for name, param in space.items():
        _check_type(algo, name, param)
        if isinstance(param, ChoiceParam):
            _check_choice(algo, name, param)


def _check_type(algo: str, name: str, param: SearchParam) -> None:
    supported = SUPPORTED_TYPES[algo]
    if param.type in supported:
        return
    able = [other for other, types in SUPPORTED_TYPES.items() if param.type in types]
    raise SearchError(
        f"NNI tuner {algo!r} cannot sample search.space.{name} of type {param.type!r}; it takes "
        f"{', '.join(sorted(supported))}. Change the parameter's type or use one of: {', '.join(able)}"
    )


def _check_choice(algo: str, name: str, param: ChoiceParam) -> None:
    for value in param.values:
        if isinstance(value, (dict, list)):
            raise SearchError(
                f"search.space.{name} choice value {value!r} is a {type(value).__name__}; NNI reads lists and "
                "dicts as nested search spaces. Use numbers or strings"
            )
        if algo in NUMERIC_CHOICE_ONLY and not _is_number(value):
            numeric = [other for other in NNI_ALGOS if other not in NUMERIC_CHOICE_ONLY]
            raise SearchError(
                f"NNI tuner {algo!r} needs numeric choices, but search.space.{name} offers {value!r}; "
                f"use numbers or one of: {', '.join(numeric)}"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
