"""The images' tag recorded in segflow.components.images is the one the inputs give, and every copy agrees.

`make image-tag` (seconds, no build) rewrites the module and the copies; `make images` runs it first.
"""

from __future__ import annotations

import os
import re

from imagebuild import project
from segflow.components import BASE_IMAGE, images
from segflow.components.rayjob import ClusterSettings


def test_the_recorded_tag_is_the_one_the_inputs_give():
    current = project.tag()
    assert images.TAG == current, (
        f"segflow.components.images records {images.TAG}, but the image inputs now give {current}: "
        "run `make image-tag` and commit the result")


def test_the_tag_is_the_version_and_a_digest():
    assert re.fullmatch(rf"{re.escape(project.version())}-[0-9a-f]{{12}}", images.TAG)
    assert images.SEGFLOW == f"ghcr.io/segflow/segflow:{images.TAG}"
    assert images.SERVE == f"ghcr.io/segflow/segflow-serve:{images.TAG}"


def test_every_copy_names_the_recorded_tag():
    assert project.stale(images.TAG) == [], "run `make image-tag` and commit the result"
    assert ClusterSettings().image == images.SEGFLOW  # RayJobs and components run the same image
    if "SEGFLOW_IMAGE" not in os.environ:
        assert BASE_IMAGE == images.SEGFLOW
