"""NNI's GP tuner, which numpy 2 and scipy >= 1.11 stop at its first randint and first model step."""

from __future__ import annotations

import warnings

import numpy as np
from nni import parameter_expressions
from nni.algorithms.hpo.gp_tuner import GPTuner
from nni.algorithms.hpo.gp_tuner.target_space import TargetSpace
from nni.algorithms.hpo.gp_tuner.util import UtilityFunction, _match_val_type
from nni.common.hpo_utils import validate_search_space
from scipy import optimize

from segflow.search.nni_tuners.values import quantized, quniform_specs


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


def _box(bound: dict) -> tuple[float, float]:
    """The closed interval L-BFGS-B may search for one parameter.

    randint's high is exclusive, so its largest legal value is high - 1; upstream searched up to
    high itself, and a refined point rounded onto it was outside the search space.
    """
    values = bound["_value"]
    if bound["_type"] == "choice":
        return min(values), max(values)
    if bound["_type"] == "randint":
        return values[0], values[1] - 1
    return values[0], values[1]


def _acq_max(f_acq, gp, y_max: float, bounds, space: TargetSpace, num_warmup: int,
             num_starting_points: int) -> np.ndarray:
    """Upstream `acq_max` with a 1-D x0 and a scalar objective, as scipy >= 1.11 requires."""
    x_tries = np.array([space.random_sample() for _ in range(num_warmup)])
    ys = f_acq(x_tries, gp=gp, y_max=y_max)
    x_max, max_acq = x_tries[ys.argmax()], ys.max()
    bounds_minmax = np.array([_box(bound) for bound in bounds], dtype=float)

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
    optimum as `res.fun[0]` although scipy returns a scalar. Its refined quniform values are
    rounded to integers, not to multiples of q; they are put back on the quniform grid. Its
    refinement box also ended randint at its exclusive high (see `_box`).
    """

    def update_search_space(self, search_space):
        validate_search_space(search_space, ["choice", "randint", "uniform", "quniform", "loguniform"])
        self._space = _TargetSpace(search_space, self._random_state)
        self._quniform = quniform_specs(search_space)

    def generate_parameters(self, parameter_id, **kwargs):
        return quantized(self._space.array_to_params(self._next_point()), self._quniform)

    def _next_point(self) -> np.ndarray:
        if self._space.len() < self._cold_start_num:
            return self._space.random_sample()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's GP warns about convergence on tiny data
            self._gp.fit(self._space.params, self._space.target)
        utility = UtilityFunction(kind=self._utility, kappa=self._kappa, xi=self._xi)
        return _acq_max(utility.utility, self._gp, self._space.target.max(), self._space.bounds, self._space,
                        self._selection_num_warm_up, self._selection_num_starting_points)
