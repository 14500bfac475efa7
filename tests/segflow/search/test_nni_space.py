"""The recipe's search space in NNI's form, and the bad inputs refused before any NNI process starts."""

from __future__ import annotations

import importlib

import pytest
from pydantic import ValidationError

from segflow.config.recipe import SearchSection
from segflow.errors import SearchError
from segflow.search.nni_backend import BUILTIN, run_nni
from segflow.search.nni_tuners import FIXED
from segflow.search.space import NNI_ALGOS, check_algo_supports, to_nni

SPACE = {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    "width": {"type": "quniform", "low": 16, "high": 64, "q": 16},
    "depth": {"type": "randint", "low": 2, "high": 5},
    "optimizer": {"type": "choice", "values": ["adamw", "sgd"]},
}


def section(algo: str = "tpe", space: dict = SPACE) -> SearchSection:
    return SearchSection(backend="nni", algo=algo, space=space)


def test_to_nni_writes_every_type_in_nni_json():
    assert to_nni(section().space) == {
        "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
        "dropout": {"_type": "uniform", "_value": [0.0, 0.5]},
        "width": {"_type": "quniform", "_value": [16, 64, 16]},
        "depth": {"_type": "randint", "_value": [2, 5]},
        "optimizer": {"_type": "choice", "_value": ["adamw", "sgd"]},
    }


def test_the_nine_tuner_names():
    assert NNI_ALGOS == ("tpe", "anneal", "evolution", "smac", "hyperband", "metis", "bohb", "gp", "dngo")


@pytest.mark.parametrize("algo", ["tpe", "anneal", "evolution", "smac", "hyperband", "bohb"])
def test_tuners_that_sample_every_type_accept_the_full_space(algo):
    check_algo_supports(algo, section().space)


def test_unknown_tuner_lists_the_valid_names():
    with pytest.raises(SearchError, match="unknown NNI tuner 'random'") as error:
        check_algo_supports("random", section().space)
    assert "tpe, anneal, evolution, smac, hyperband, metis, bohb, gp, dngo" in str(error.value)


def test_metis_refuses_loguniform_and_names_tuners_that_take_it():
    with pytest.raises(SearchError, match=r"'metis' cannot sample search.space.lr of type 'loguniform'") as error:
        check_algo_supports("metis", section().space)
    assert "tpe" in str(error.value) and "gp" in str(error.value)


@pytest.mark.parametrize("algo", ["metis", "gp", "dngo"])
def test_gaussian_process_tuners_refuse_string_choices(algo):
    space = {"optimizer": SPACE["optimizer"]}
    with pytest.raises(SearchError, match=f"'{algo}' needs numeric choices.*'adamw'"):
        check_algo_supports(algo, section(algo, space).space)


def test_nested_choice_values_are_refused():
    space = {"block": {"type": "choice", "values": [{"depth": 2}, {"depth": 3}]}}
    with pytest.raises(SearchError, match="nested search spaces"):
        check_algo_supports("tpe", section(space=space).space)


def test_empty_space_is_refused():
    with pytest.raises(SearchError, match="search.space is empty"):
        check_algo_supports("tpe", {})


def test_loguniform_low_at_or_below_zero_is_refused_by_the_recipe():
    with pytest.raises(ValidationError, match="loguniform needs low > 0"):
        section(space={"lr": {"type": "loguniform", "low": 0.0, "high": 0.1}})


def test_run_nni_refuses_metis_with_loguniform_before_anything_runs(tmp_path):
    with pytest.raises(SearchError, match="'metis' cannot sample"):
        run_nni(section("metis"), "nni_trial_functions:quadratic", {}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_run_nni_refuses_an_unknown_tuner_before_anything_runs(tmp_path):
    with pytest.raises(SearchError, match=r"unknown NNI tuner 'asha' \(search.algo\); use one of: tpe, anneal"):
        run_nni(section("asha"), "nni_trial_functions:quadratic", {}, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("trial", "message"), [
    ("no_colon_here", "not of the form 'package.module:function'"),
    ("segflow.search.no_such_module:f", "cannot be imported"),
    ("segflow.search.space:no_such_function", "has no function 'no_such_function'"),
])
def test_run_nni_refuses_a_trial_it_cannot_load(tmp_path, trial, message):
    with pytest.raises(SearchError, match=message):
        run_nni(section(space={"x": SPACE["dropout"]}), trial, {}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_run_nni_refuses_trial_args_that_are_not_json(tmp_path):
    with pytest.raises(SearchError, match="trial_args must be JSON values"):
        run_nni(section(space={"x": SPACE["dropout"]}), "segflow.search.space:to_nni", {"path": object()}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_every_tuner_is_built_in_or_fixed_and_each_fixed_class_loads():
    assert sorted([*BUILTIN, *FIXED]) == sorted(NNI_ALGOS)
    for class_path in FIXED.values():
        module, _, name = class_path.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type)
