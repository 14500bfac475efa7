"""NNI's BOHB advisor on ConfigSpace 1.x, without the nni#5263 crash."""

from __future__ import annotations

from nni.algorithms.hpo.bohb_advisor import BOHB as _UpstreamBOHB

from segflow.search.nni_tuners.advisors import StringParameterIds
from segflow.search.nni_tuners.config_space import config_space
from segflow.search.nni_tuners.values import quantized, quniform_specs


class BOHB(StringParameterIds, _UpstreamBOHB):
    """NNI's BOHB advisor, fixed twice.

    ConfigSpace 1.0 removed quantised floats (`UniformFloatHyperparameter(q=...)`), which
    upstream builds for quniform ("unexpected keyword argument 'q'"): BOHB now models quniform
    as a plain float and rounds each suggestion the way NNI defines quniform. And its string
    parameter ids hit nni#5263 (see `StringParameterIds`).
    """

    def handle_update_search_space(self, data):
        self.search_space = config_space(data)
        self._quniform = quniform_specs(data)

    def _get_one_trial_job(self):
        job = super()._get_one_trial_job()
        if job is not None:
            parameters = job["parameters"]  # the same dict BOHB keeps to learn from the result
            parameters.update(quantized(parameters, self._quniform))
        return job
