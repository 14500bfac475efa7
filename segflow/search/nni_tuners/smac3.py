"""SMAC through SMAC3, the maintained library, behind NNI's tuner interface.

NNI's own SMAC tuner imports smac4nni and ConfigSpaceNNI, which have no wheel for Python 3.11
and do not build with current setuptools/Cython. SMAC3 (`smac` on PyPI; its random forest is
pyrfr, built with swig) offers the same method, and its ask/tell API matches NNI's
generate_parameters / receive_trial_result one to one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from nni.common.hpo_utils import validate_search_space
from nni.tuner import Tuner
from nni.utils import OptimizeMode, extract_scalar_reward

from segflow.search.nni_tuners.config_space import config_space
from segflow.search.nni_tuners.values import quantized, quniform_specs


def _never_called(config, seed: int = 0) -> float:
    raise RuntimeError("SMAC runs under NNI through ask/tell; NNI runs the trials")


class Smac(Tuner):
    """SMAC3's hyperparameter-optimisation facade (random forest + expected improvement).

    SMAC minimises a cost, so a maximised metric is negated. Its run history goes to
    `output_directory`, by default the experiment's checkpoint folder that NNI hands the
    dispatcher (`NNI_CHECKPOINT_DIRECTORY`), not `./smac3_output`.
    """

    def __init__(self, optimize_mode: str = "minimize", trials: int = 100, output_directory: str | None = None,
                 seed: int = 0):
        self._sign = -1.0 if OptimizeMode(optimize_mode) is OptimizeMode.Maximize else 1.0
        self._output = Path(output_directory or Path(os.environ["NNI_CHECKPOINT_DIRECTORY"]) / "smac3")
        self._trials, self._seed = trials, seed
        self._smac = None
        self._asked: dict = {}
        self._quniform: dict[str, list] = {}

    def update_search_space(self, search_space):
        # SMAC3 imports dask.distributed (seconds on a busy machine): imported here, once the
        # dispatcher is connected, not at class load, which counts against NNI's 10 s start-up window.
        from smac import HyperparameterOptimizationFacade, Scenario

        validate_search_space(search_space, ["choice", "randint", "uniform", "quniform", "loguniform"])
        scenario = Scenario(config_space(search_space, self._seed), output_directory=self._output,
                            deterministic=True, n_trials=self._trials, seed=self._seed)
        intensifier = HyperparameterOptimizationFacade.get_intensifier(scenario, max_config_calls=1)
        self._smac = HyperparameterOptimizationFacade(scenario, _never_called, intensifier=intensifier,
                                                      overwrite=True, logging_level=30)
        self._quniform = quniform_specs(search_space)

    def generate_parameters(self, parameter_id, **kwargs):
        info = self._smac.ask()
        self._asked[parameter_id] = info
        return quantized(dict(info.config), self._quniform)

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        from smac.runhistory import TrialValue

        self._smac.tell(self._asked.pop(parameter_id), TrialValue(cost=self._sign * extract_scalar_reward(value)))

    def trial_end(self, parameter_id, success, **kwargs):
        from smac.runhistory import StatusType, TrialValue

        if not success and parameter_id in self._asked:
            self._smac.tell(self._asked.pop(parameter_id), TrialValue(cost=np.inf, status=StatusType.CRASHED))
