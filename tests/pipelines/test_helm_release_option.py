"""`segflow pipeline compile --helm-release NAME[/NAMESPACE]`: only the deploy step learns which release to upgrade.

Through the CLI a user runs; the compiled IR YAML is what KFP's driver turns into the pods' env.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segflow.errors import ConfigError
from segflow.pipelines.compile import PIPELINES
from segflow.pipelines.conventions import ClusterConventions

SEGFLOW_CLI = str(Path(sys.executable).parent / "segflow")


def _env(path: Path) -> dict[str, dict[str, str]]:
    """Each executor's plain env in a compiled pipeline."""
    spec = next(yaml.safe_load_all(path.read_text()))
    return {name: {e["name"]: e["value"] for e in executor["container"].get("env", [])}
            for name, executor in spec["deploymentSpec"]["executors"].items()}


def _compile(folder: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([SEGFLOW_CLI, "pipeline", "compile", "--out-dir", str(folder), *options],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("option", "expected"), [
    ("segflow/serving", {"SEGFLOW_HELM_RELEASE": "segflow", "SEGFLOW_HELM_NAMESPACE": "serving"}),
    ("segflow", {"SEGFLOW_HELM_RELEASE": "segflow"}),  # the step's own namespace
], ids=["with-namespace", "own-namespace"])
def test_the_release_reaches_the_deploy_step_only(tmp_path, option, expected):
    done = _compile(tmp_path, "--helm-release", option)
    assert done.returncode == 0, done.stderr
    for pipeline in ("train_and_serve", "search"):
        for executor, env in _env(tmp_path / f"{pipeline}.yaml").items():
            helm = {name: value for name, value in env.items() if name.startswith("SEGFLOW_HELM_")}
            assert helm == (expected if executor == "exec-deploy" else {}), (pipeline, executor)


def test_the_committed_pipelines_upgrade_no_release():
    """Without the option the deploy step keeps its other paths (TorchServe's API, else the logged command)."""
    for pipeline in ("train_and_serve", "search"):
        for executor, env in _env(PIPELINES / f"{pipeline}.yaml").items():
            assert not [name for name in env if name.startswith("SEGFLOW_HELM_")], (pipeline, executor)


def test_a_bad_release_is_refused_by_the_cli_before_anything_is_written(tmp_path):
    done = _compile(tmp_path, "--helm-release", "Segflow/serving")
    assert done.returncode == 1
    assert "--helm-release 'Segflow/serving' is not NAME or NAME/NAMESPACE" in done.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["segflow/", "/segflow", "a/b/c", "s" * 54, "segflow_1", "-segflow"])
def test_conventions_refuse_what_is_not_a_release_and_namespace(value):
    with pytest.raises(ConfigError, match=r"--helm-release .* is not NAME or NAME/NAMESPACE.*e\.g\. segflow/segflow"):
        ClusterConventions(helm_release=value)
