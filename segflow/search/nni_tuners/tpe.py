"""NNI's TPE tuner, made to take a trial's result after NNI has already reported its end."""

from __future__ import annotations

from nni.algorithms.hpo.tpe_tuner import TpeTuner


class Tpe(TpeTuner):
    """Upstream TPE that files a late result under the trial's own parameters.

    NNI's manager sends TRIAL_END as soon as the trial process exits and the final metric when it
    has read it from the trial's output, so on a busy machine the end can come first. Upstream's
    `trial_end` drops the trial from `_running_params` and `receive_trial_result` then pops it
    again: `KeyError: <parameter id>` kills the dispatcher and the whole search. Every suggestion
    is also kept in `_params`, so the result is recorded from there instead.
    """

    def receive_trial_result(self, parameter_id, _parameters, value, **kwargs):
        if parameter_id not in self._running_params and parameter_id in self._params:
            self._running_params[parameter_id] = self._params[parameter_id]
        super().receive_trial_result(parameter_id, _parameters, value, **kwargs)
