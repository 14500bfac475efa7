"""Pipelines compile, the committed IR is current and loads back in kfp, submit errors are clear."""

import filecmp

import pytest
import yaml
from kfp import components

from segflow.config import load_recipe
from segflow.errors import ConfigError, PipelineError
from segflow.pipelines.cli import _pipeline_arguments
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
    for name in ("train_and_serve", "search"):
        pipeline = components.load_component_from_file(str(PIPELINES / f"{name}.yaml"))
        assert "recipe_json" in pipeline.component_spec.inputs


def test_submit_to_an_unreachable_endpoint_says_how_to_fix_it(closed_port):
    with pytest.raises(PipelineError, match=rf"cannot reach Kubeflow Pipelines at http://127.0.0.1:{closed_port}.*port-forward"):
        submit_run(load_recipe("quickstart"), f"http://127.0.0.1:{closed_port}", "segflow")


def _tasks_by_display_name(ir: dict) -> dict:
    """Every task of the IR's DAGs (the root and each condition group), by its display name."""
    found = {}
    for dag in [ir["root"]["dag"], *(c["dag"] for c in ir["components"].values() if "dag" in c)]:
        found.update({task["taskInfo"]["name"]: task for task in dag["tasks"].values()})
    return found


def test_deploy_is_gated_on_the_evaluated_metric_and_distillation_on_its_parameter():
    ir = next(yaml.safe_load_all((PIPELINES / "train_and_serve.yaml").read_text()))
    tasks = _tasks_by_display_name(ir)
    gate, branch = tasks["quality-gate"], tasks["distill-student"]
    assert gate["triggerPolicy"]["condition"] == ("inputs.parameter_values['pipelinechannel--evaluate-Output'] >= "
                                                  "inputs.parameter_values['pipelinechannel--deploy_min_metric']")
    assert branch["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--distill_student'] != ''"
    gated = ir["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    assert [t["taskInfo"]["name"] for t in gated.values()] == ["deploy"]
    branched = ir["components"][branch["componentRef"]["name"]]["dag"]["tasks"]
    assert sorted(t["taskInfo"]["name"] for t in branched.values()) == ["distill", "evaluate student"]
    defaults = ir["root"]["inputDefinitions"]["parameters"]
    assert defaults["distill_student"]["defaultValue"] == "" and defaults["deploy_min_metric"]["defaultValue"] == 0.0


def test_search_runs_tune_or_nas_by_its_method_parameter():
    ir = next(yaml.safe_load_all((PIPELINES / "search.yaml").read_text()))
    tasks = _tasks_by_display_name(ir)
    for group, step, method in (("hyperparameter-search", "tune", "tune"), ("architecture-search", "nas", "nas")):
        condition = tasks[group]["triggerPolicy"]["condition"]
        assert condition == f"inputs.parameter_values['pipelinechannel--method'] == '{method}'"
        branch = ir["components"][tasks[group]["componentRef"]["name"]]["dag"]["tasks"]
        assert [t["taskInfo"]["name"] for t in branch.values()] == [step]
    assert ir["root"]["inputDefinitions"]["parameters"]["method"]["defaultValue"] == "tune"


def test_options_of_train_and_serve_are_refused_for_the_search_pipeline():
    assert _pipeline_arguments("train_and_serve", True, "unet:depth=1", 0.5, False) == {
        "tune": True, "distill_student": "unet:depth=1", "deploy_min_metric": 0.5}
    assert _pipeline_arguments("search", False, None, 0.0, False) == {}
    for tune, serve in ((False, True), (True, False)):
        with pytest.raises(ConfigError, match="belong to train_and_serve, not 'search'"):
            _pipeline_arguments("search", tune, None, 0.0, serve)


def test_no_step_pip_installs_at_run_time():
    for name in ("train_and_serve", "search"):
        assert "pip install" not in (PIPELINES / f"{name}.yaml").read_text(), (
            f"{name}: a component installs packages when it runs; the segflow image already holds them "
            "(@dsl.component(..., install_kfp_package=False))")
