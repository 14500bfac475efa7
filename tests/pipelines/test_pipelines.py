"""Pipelines compile, the committed IR is current and loads back in kfp, submit errors are clear."""

import filecmp

import pytest
from kfp import components

from segflow.config import load_recipe
from segflow.errors import PipelineError
from segflow.pipelines.compile import PIPELINES, compile_all
from segflow.pipelines.submit import submit_run


def test_committed_ir_is_current(tmp_path):
    for path in compile_all(tmp_path):
        committed = PIPELINES / path.name
        assert committed.is_file(), f"{committed.name} is not committed; run `segflow pipeline compile`"
        assert filecmp.cmp(path, committed, shallow=False), (
            f"{committed} is stale: run `segflow pipeline compile` and commit the result"
        )


def test_ir_loads_back_with_kfps_loader():
    for name in ("train_and_serve",):
        pipeline = components.load_component_from_file(str(PIPELINES / f"{name}.yaml"))
        assert "recipe_json" in pipeline.component_spec.inputs


def test_submit_to_an_unreachable_endpoint_says_how_to_fix_it(closed_port):
    with pytest.raises(PipelineError, match=rf"cannot reach Kubeflow Pipelines at http://127.0.0.1:{closed_port}.*port-forward"):
        submit_run(load_recipe("quickstart"), f"http://127.0.0.1:{closed_port}", "segflow")
