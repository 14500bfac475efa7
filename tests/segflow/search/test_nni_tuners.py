"""Each fix in segflow.search.nni_tuners, shown against the upstream NNI 3.0 tuner it replaces.

The tuners are driven directly, the way NNI's dispatcher drives them (update_search_space, then
generate_parameters / receive_trial_result per trial), so the model-based phases that a 4-trial
experiment never reaches are exercised too. Each "upstream" test pins the exact failure on this
stack; if NNI or numpy/scipy ever stop failing, it says the fix can go.
"""

from __future__ import annotations

import importlib
import math

import pytest
from ConfigSpace import UniformFloatHyperparameter
from nni.algorithms.hpo.gp_tuner import GPTuner
from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner
from nni.algorithms.hpo.metis_tuner import MetisTuner
from nni.algorithms.hpo.tpe_tuner import TpeTuner

from segflow.search.nni_tuners.anneal import Anneal
from segflow.search.nni_tuners.config_space import config_space
from segflow.search.nni_tuners.gp import GP
from segflow.search.nni_tuners.metis import Metis
from segflow.search.nni_tuners.smac3 import Smac
from segflow.search.nni_tuners.tpe import Tpe

SPACE = {
    "x": {"_type": "uniform", "_value": [-2.0, 2.0]},
    "n": {"_type": "randint", "_value": [1, 5]},
    "q": {"_type": "quniform", "_value": [0, 10, 4]},
    "c": {"_type": "choice", "_value": [1, 2, 4]},
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
}
NO_LOG = {name: spec for name, spec in SPACE.items() if name != "lr"}
NO_RANDINT = {name: spec for name, spec in SPACE.items() if name != "n"}

# Small model budgets keep each model-based suggestion short. Metis fits its GP with 250 optimizer
# restarts per suggestion (not configurable) and, with candidates on, more GPs for outlier and
# candidate checks: tens of seconds on two cores, so its candidates stay off here. They go through
# the same patched `minimize` as the lowest-mu search tested here.
METIS_ARGS = {"optimize_mode": "minimize", "cold_start_num": 2, "selection_num_starting_points": 5,
              "no_candidates": True}
GP_ARGS = {"optimize_mode": "minimize", "cold_start_num": 2, "selection_num_warm_up": 200,
           "selection_num_starting_points": 3}


def loss(params: dict) -> float:
    return (params["x"] - 0.5) ** 2 + 0.01 * params.get("n", 1)


def drive(tuner, space: dict, trials: int) -> list[dict]:
    """What NNI's dispatcher does, one trial at a time."""
    tuner.update_search_space(space)
    suggestions = []
    for parameter_id in range(trials):
        params = tuner.generate_parameters(parameter_id)
        tuner.receive_trial_result(parameter_id, params, loss(params))
        suggestions.append(params)
    return suggestions


def assert_in_space(suggestions: list[dict], space: dict) -> None:
    for params in suggestions:
        assert set(params) == set(space)
        for name, spec in space.items():
            value, bounds = params[name], spec["_value"]
            assert isinstance(value, (int, float, str)), f"{name}={value!r} is not a Python scalar"
            if spec["_type"] == "choice":
                assert value in bounds
            elif spec["_type"] == "randint":
                assert isinstance(value, int) and bounds[0] <= value < bounds[1]
            else:
                assert bounds[0] <= value <= bounds[1]
            if spec["_type"] == "quniform":
                assert math.isclose(value % bounds[2], 0) or math.isclose(value, bounds[1]), f"{name}={value}"


# ---- TPE ---------------------------------------------------------------------------------------


def end_before_result(tuner, trials: int) -> list[dict]:
    """The order a busy NNI manager can deliver: each trial's end, then its final metric."""
    tuner.update_search_space(SPACE)
    suggestions = []
    for parameter_id in range(trials):
        params = tuner.generate_parameters(parameter_id)
        tuner.trial_end(parameter_id, True)
        tuner.receive_trial_result(parameter_id, params, loss(params))
        suggestions.append(params)
    return suggestions


def test_upstream_tpe_loses_a_result_that_comes_after_the_trial_end():
    with pytest.raises(KeyError):
        end_before_result(TpeTuner(optimize_mode="minimize"), 1)


def test_tpe_learns_from_a_result_that_comes_after_the_trial_end():
    tuner = Tpe(optimize_mode="minimize", seed=0)
    suggestions = end_before_result(tuner, 25)  # past TPE's 20 random start-up trials
    assert_in_space(suggestions, SPACE)
    assert all(len(records) == 25 for records in tuner._history.values())
    assert not tuner._running_params


# ---- Anneal ------------------------------------------------------------------------------------


def test_upstream_anneal_fails_on_a_quniform_result():
    with pytest.raises(ValueError, match="truth value of an empty array is ambiguous"):
        drive(HyperoptTuner("anneal", optimize_mode="minimize"), SPACE, 1)


def test_anneal_learns_from_every_type():
    assert_in_space(drive(Anneal("minimize"), SPACE, 12), SPACE)


# ---- Metis -------------------------------------------------------------------------------------


def test_upstream_metis_fails_once_its_model_starts():
    with pytest.raises(ValueError, match="'x0' must only have one dimension"):
        drive(MetisTuner(**METIS_ARGS), NO_LOG, 3)


def test_metis_suggests_from_its_model():
    assert_in_space(drive(Metis(**METIS_ARGS), NO_LOG, 3), NO_LOG)


# ---- GP ----------------------------------------------------------------------------------------


def test_upstream_gp_fails_to_sample_randint():
    with pytest.raises(ValueError, match="setting an array element with a sequence"):
        drive(GPTuner(**GP_ARGS), SPACE, 1)


def test_upstream_gp_fails_once_its_model_starts():
    with pytest.raises(ValueError, match="'x0' must only have one dimension"):
        drive(GPTuner(**GP_ARGS), NO_RANDINT, 3)


def test_gp_suggests_from_its_model_on_the_quniform_grid():
    assert_in_space(drive(GP(**GP_ARGS), SPACE, 5), SPACE)


def test_gp_refines_randint_up_to_its_largest_legal_value_and_never_to_the_exclusive_high():
    """A loss that falls as n grows pulls L-BFGS-B to n's upper edge; randint [1, 5) ends at 4.

    Seeded so the run is repeatable: upstream's box reached 5 on seeds 6 and 7.
    """
    space = {"x": SPACE["x"], "n": SPACE["n"]}
    suggested = set()
    for seed in range(8):
        tuner = GP(**GP_ARGS)
        tuner._random_state.seed(seed)  # the one RandomState GP's sampling and its sklearn GP share
        tuner.update_search_space(space)
        for parameter_id in range(6):
            params = tuner.generate_parameters(parameter_id)
            tuner.receive_trial_result(parameter_id, params, (params["x"] - 0.5) ** 2 - params["n"])
            suggested.add(params["n"])
    assert suggested <= {1, 2, 3, 4}
    assert 4 in suggested


# ---- SMAC --------------------------------------------------------------------------------------


def test_upstream_smac_tuner_cannot_load():
    with pytest.raises(ModuleNotFoundError, match="smac.facade|ConfigSpaceNNI"):
        importlib.import_module("nni.algorithms.hpo.smac_tuner")


def test_smac3_tuner_suggests_from_its_model_and_writes_where_told(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "experiment" / "smac3"
    suggestions = drive(Smac("minimize", trials=8, output_directory=str(output)), SPACE, 8)
    assert_in_space(suggestions, SPACE)
    assert output.is_dir()
    assert not (tmp_path / "smac3_output").exists()


def test_smac3_tuner_maximizes_by_negating_the_cost(tmp_path):
    tuner = Smac("maximize", trials=6, output_directory=str(tmp_path))
    tuner.update_search_space(NO_LOG)
    params = tuner.generate_parameters(0)
    tuner.receive_trial_result(0, params, 3.0)
    assert tuner._smac.runhistory.get_cost(tuner._smac.runhistory.get_configs()[0]) == -3.0


# ---- BOHB's search space -----------------------------------------------------------------------


def test_configspace_1_has_no_quantised_floats_that_upstream_bohb_builds():
    with pytest.raises(TypeError, match="unexpected keyword argument 'q'"):
        UniformFloatHyperparameter("q", lower=0, upper=10, q=4)


def test_config_space_models_every_nni_type():
    space = config_space(SPACE, seed=0)
    assert set(space) == set(SPACE)
    assert space["n"].lower == 1 and space["n"].upper == 4  # randint's high is exclusive
    assert space["lr"].log and not space["x"].log
    assert list(space["c"].choices) == [1, 2, 4]
