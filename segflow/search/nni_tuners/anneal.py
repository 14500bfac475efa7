"""NNI's Anneal tuner, whose results numpy 2 cannot take back when the space has a quniform."""

from __future__ import annotations

from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner

from segflow.search.nni_tuners.values import plain


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
