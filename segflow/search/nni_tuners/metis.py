"""NNI's Metis tuner, whose acquisition searches hand scipy a 2-D starting point."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from nni.algorithms.hpo.metis_tuner import MetisTuner, lib_acquisition_function

from segflow.search.nni_tuners.values import plain


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
