"""NNI's search-space JSON as a ConfigSpace 1.x space, for SMAC3 and BOHB."""

from __future__ import annotations

from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer


def config_space(search_space: dict, seed: int | None = None) -> ConfigurationSpace:
    """ConfigSpace form of NNI's search space. ConfigSpace 1.0 dropped quantised floats, so a
    quniform becomes a plain float; the tuner puts its suggestion back on the grid."""
    space = ConfigurationSpace(seed=seed)
    space.add([_hyperparameter(name, spec["_type"], spec["_value"]) for name, spec in search_space.items()])
    return space


def _hyperparameter(name: str, kind: str, value: list):
    if kind == "choice":
        return Categorical(name, value)
    if kind == "randint":
        return Integer(name, (value[0], value[1] - 1))
    return Float(name, (value[0], value[1]), log=kind == "loguniform")
