"""KFP v2 components, one module per pipeline step; each is a thin wrapper around segflow.

Components are lightweight Python components whose base image is the segflow image
(`SEGFLOW_IMAGE`; by default the one `make images` builds, named in segflow.components.images):
everything they import, kfp included, is already installed there, so nothing is pip-installed
at run time (`install_kfp_package=False`; KFP's default would pip-install kfp in every step).
Locally, kfp.local runs them in this interpreter.
Artifacts (Dataset, Model, Metrics, HTML, Markdown) are folders or files at `.path`, which
is exactly what segflow's store accepts as a URI.
"""

import os

from segflow.components.images import SEGFLOW

BASE_IMAGE = os.environ.get("SEGFLOW_IMAGE", SEGFLOW)
