"""NNI's Hyperband advisor, and the parameter-id fix it shares with BOHB (nni#5263)."""

from __future__ import annotations

from nni.algorithms.hpo.hyperband_advisor import Hyperband as _UpstreamHyperband


class StringParameterIds:
    """Hyperband and BOHB name configurations "bracket_round_index" (strings).

    `Recoverable.is_created_in_previous_exp` compares every id with the integer high-water mark
    of a resumed experiment, so the first reported metric raises "'<=' not supported between
    instances of 'str' and 'int'" (nni#5263). Resuming only ever records integer ids, so a string
    id never belongs to a previous experiment.
    """

    def is_created_in_previous_exp(self, param_id) -> bool:
        return isinstance(param_id, int) and super().is_created_in_previous_exp(param_id)


class Hyperband(StringParameterIds, _UpstreamHyperband):
    """NNI's Hyperband advisor without the nni#5263 crash."""
