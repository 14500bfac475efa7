"""NNI 3.0 tuners made to run on numpy 2.4, scipy 1.17 and ConfigSpace 1.x.

NNI's last release (3.0, 2023) predates these versions, and six of the nine tuners segflow offers
crash inside NNI's dispatcher as shipped. Each class here is the upstream tuner with the smallest
change that makes it run; NNI loads them by class name through `CustomAlgorithmConfig`, so the
installed NNI package is not modified. SMAC is different: NNI's tuner needs smac4nni and
ConfigSpaceNNI, which have no wheel and do not build, so `Smac` puts SMAC3 (the maintained
library) behind NNI's tuner interface.

TPE, Evolution and DNGO run as shipped and have no class here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer
from nni import parameter_expressions
from nni.algorithms.hpo.bohb_advisor import BOHB as _UpstreamBOHB
from nni.algorithms.hpo.gp_tuner import GPTuner
from nni.algorithms.hpo.gp_tuner.target_space import TargetSpace
from nni.algorithms.hpo.gp_tuner.util import UtilityFunction, _match_val_type
from nni.algorithms.hpo.hyperband_advisor import Hyperband as _UpstreamHyperband
from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner
from nni.algorithms.hpo.metis_tuner import MetisTuner, lib_acquisition_function
from nni.common.hpo_utils import validate_search_space
from nni.tuner import Tuner
from nni.utils import OptimizeMode, extract_scalar_reward
from scipy import optimize
from smac import HyperparameterOptimizationFacade, Scenario
from smac.runhistory.dataclasses import TrialValue
from smac.runhistory.enumerations import StatusType


def plain(value):
    """`value` with numpy scalars replaced by Python ones, inside dicts and lists too."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


def quantize(value: float, low: float, high: float, q: float) -> float:
    """NNI's quniform: clip(round(value / q) * q, low, high)."""
    return float(np.clip(np.round(value / q) * q, low, high))


# ---- Anneal ------------------------------------------------------------------------------------


class Anneal(HyperoptTuner):
    """NNI's Anneal (hyperopt's `anneal.suggest`) with suggestions kept as Python scalars.

    Upstream stores a quniform suggestion as a numpy float (from `np.clip`); when its result comes
    back, `receive_trial_result` tests `vals[key] == []`, which numpy 2 evaluates to an empty
    array, and `or` on it raises "The truth value of an empty array is ambiguous".
    """

    def __init__(self, optimize_mode: str = "minimize", parallel_optimize: bool = False,
                 constant_liar_type: str = "min"):
        super().__init__("anneal", optimize_mode, parallel_optimize, constant_liar_type)

    def _get_suggestion(self, random_search=False):
        return plain(super()._get_suggestion(random_search))


# ---- Hyperband and BOHB ------------------------------------------------------------------------


class _StringParameterIds:
    """Hyperband and BOHB name configurations "bracket_round_index" (strings).

    `Recoverable.is_created_in_previous_exp` compares every id with the integer high-water mark
    of a resumed experiment, so the first reported metric raises "'<=' not supported between
    instances of 'str' and 'int'" (nni#5263). Resuming only ever records integer ids, so a string
    id never belongs to a previous experiment.
    """

    def is_created_in_previous_exp(self, param_id) -> bool:
        return isinstance(param_id, int) and super().is_created_in_previous_exp(param_id)


class Hyperband(_StringParameterIds, _UpstreamHyperband):
    """NNI's Hyperband advisor without the nni#5263 crash."""


class BOHB(_StringParameterIds, _UpstreamBOHB):
    """NNI's BOHB advisor without the nni#5263 crash, on ConfigSpace 1.x.

    ConfigSpace 1.0 removed quantised floats (`UniformFloatHyperparameter(q=...)`), which BOHB
    builds for quniform: BOHB now models quniform as a plain float and rounds the suggestion the
    way NNI defines quniform.
    """

    def handle_update_search_space(self, data):
        self.search_space = config_space(data)
        self._quantized = {name: spec["_value"] for name, spec in data.items() if spec["_type"] == "quniform"}

    def _get_one_trial_job(self):
        job = super()._get_one_trial_job()
        if job is not None:
            parameters = job["parameters"]  # the same dict BOHB keeps to learn from the result
            parameters.update(plain(parameters))
            parameters.update({name: quantize(parameters[name], *spec) for name, spec in self._quantized.items()})
        return job


# ---- Metis -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_dimensional_x0(module) -> Iterator[None]:
    """Within the block, `module.minimize` gets x0 flattened, as scipy >= 1.11 requires."""
    upstream = module.minimize

    def minimize(fun, x0, *args, **kwargs):
        return upstream(fun, np.ravel(x0), *args, **kwargs)

    module.minimize = minimize
    try:
        yield
    finally:
        module.minimize = upstream


class Metis(MetisTuner):
    """NNI's Metis with the starting points of its L-BFGS-B searches passed as 1-D arrays.

    Metis hands scipy `starting_point.reshape(1, -1)`; scipy >= 1.11 raises "'x0' must only have
    one dimension". The searches live in module functions, so the fix swaps the module's
    `minimize` while Metis generates parameters, and restores it after.
    """

    def generate_parameters(self, parameter_id, **kwargs):
        with _one_dimensional_x0(lib_acquisition_function):
            return plain(super().generate_parameters(parameter_id, **kwargs))


# ---- GP ----------------------------------------------------------------------------------------


def _sample(bound: dict, random_state: np.random.RandomState) -> float:
    if bound["_type"] == "choice":
        return parameter_expressions.choice(bound["_value"], random_state)
    return getattr(parameter_expressions, bound["_type"])(*bound["_value"], random_state)


class _TargetSpace(TargetSpace):
    """GP's target space with randint sampled as a scalar.

    Upstream draws `randint(low, high, size=1)` and stores the 1-element array into one element
    of the point, which numpy 2 refuses: "setting an array element with a sequence" (nni#4978).
    """

    def random_sample(self) -> np.ndarray:
        return np.array([_sample(bound, self._random_state) for bound in self._bounds], dtype=float)


def _acq_max(f_acq, gp, y_max: float, bounds, space: TargetSpace, num_warmup: int,
             num_starting_points: int) -> np.ndarray:
    """Upstream `acq_max` with a 1-D x0 and a scalar objective, as scipy >= 1.11 requires."""
    x_tries = np.array([space.random_sample() for _ in range(num_warmup)])
    ys = f_acq(x_tries, gp=gp, y_max=y_max)
    x_max, max_acq = x_tries[ys.argmax()], ys.max()
    bounds_minmax = np.array([[bound["_value"][0], bound["_value"][1 if bound["_type"] == "quniform" else -1]]
                              for bound in bounds])

    def negative_acquisition(x: np.ndarray) -> float:
        return -float(f_acq(x.reshape(1, -1), gp=gp, y_max=y_max)[0])

    for _ in range(num_starting_points):
        res = optimize.minimize(negative_acquisition, space.random_sample(), bounds=bounds_minmax, method="L-BFGS-B")
        if res.success and -res.fun >= max_acq:
            x_max, max_acq = _match_val_type(res.x, bounds), -res.fun
    return np.clip(x_max, bounds_minmax[:, 0], bounds_minmax[:, 1])


class GP(GPTuner):
    """NNI's GP tuner with scalar randint samples and an acquisition search scipy 1.17 accepts.

    Upstream fails twice on this stack: randint sampling (see `_TargetSpace`), then its L-BFGS-B
    refinement, which passes a 2-D x0 ("'x0' must only have one dimension") and reads the
    optimum as `res.fun[0]` although scipy returns a scalar.
    """

    def update_search_space(self, search_space):
        validate_search_space(search_space, ["choice", "randint", "uniform", "quniform", "loguniform"])
        self._space = _TargetSpace(search_space, self._random_state)

    def generate_parameters(self, parameter_id, **kwargs):
        if self._space.len() < self._cold_start_num:
            return plain(self._space.array_to_params(self._space.random_sample()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's GP warns about convergence on tiny data
            self._gp.fit(self._space.params, self._space.target)
        utility = UtilityFunction(kind=self._utility, kappa=self._kappa, xi=self._xi)
        best = _acq_max(utility.utility, self._gp, self._space.target.max(), self._space.bounds, self._space,
                        self._selection_num_warm_up, self._selection_num_starting_points)
        return plain(self._space.array_to_params(best))


# ---- SMAC --------------------------------------------------------------------------------------


def config_space(search_space: dict, seed: int | None = None) -> ConfigurationSpace:
    """ConfigSpace 1.x form of NNI's search-space JSON; quniform becomes a float, rounded on output."""
    space = ConfigurationSpace(seed=seed)
    space.add([_hyperparameter(name, spec["_type"], spec["_value"]) for name, spec in search_space.items()])
    return space


def _hyperparameter(name: str, kind: str, value: list):
    if kind == "choice":
        return Categorical(name, value)
    if kind == "randint":
        return Integer(name, (value[0], value[1] - 1))
    return Float(name, (value[0], value[1]), log=kind == "loguniform")


def _never_called(config, seed: int = 0) -> float:
    raise RuntimeError("SMAC runs under NNI through ask/tell; NNI runs the trials")


class Smac(Tuner):
    """SMAC3's hyperparameter-optimisation facade (random forest + EI) behind NNI's tuner interface.

    NNI asks for parameters with an id and later reports that id's result; SMAC3's ask/tell API
    matches this one to one. Its run history goes to `output_directory` (the experiment's folder),
    not to `./smac3_output`.
    """

    def __init__(self, optimize_mode: str = "minimize", trials: int = 100, output_directory: str = "smac3_output",
                 seed: int = 0):
        self._sign = -1.0 if OptimizeMode(optimize_mode) is OptimizeMode.Maximize else 1.0
        self._trials, self._output, self._seed = trials, Path(output_directory), seed
        self._smac = None
        self._asked: dict = {}
        self._quantized: dict[str, list] = {}

    def update_search_space(self, search_space):
        validate_search_space(search_space, ["choice", "randint", "uniform", "quniform", "loguniform"])
        scenario = Scenario(config_space(search_space, self._seed), output_directory=self._output,
                            deterministic=True, n_trials=self._trials, seed=self._seed)
        intensifier = HyperparameterOptimizationFacade.get_intensifier(scenario, max_config_calls=1)
        self._smac = HyperparameterOptimizationFacade(scenario, _never_called, intensifier=intensifier,
                                                      overwrite=True, logging_level=30)
        self._quantized = {name: spec["_value"] for name, spec in search_space.items() if spec["_type"] == "quniform"}

    def generate_parameters(self, parameter_id, **kwargs):
        info = self._smac.ask()
        self._asked[parameter_id] = info
        params = plain(dict(info.config))
        params.update({name: quantize(params[name], *spec) for name, spec in self._quantized.items()})
        return params

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        self._smac.tell(self._asked.pop(parameter_id), TrialValue(cost=self._sign * extract_scalar_reward(value)))

    def trial_end(self, parameter_id, success, **kwargs):
        if not success and parameter_id in self._asked:
            self._smac.tell(self._asked.pop(parameter_id), TrialValue(cost=np.inf, status=StatusType.CRASHED))
