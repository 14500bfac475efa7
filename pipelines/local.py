"""`segflow run`: a pipeline executed by kfp.local in this interpreter, Ray in local mode.

pipeline_root lives inside the run directory, so every artifact of a run (dataset, Ray
checkpoints, model, reports, archive) is in one folder the user can inspect or delete.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from kfp import local

from segflow.config import recipe_to_json
from segflow.config.recipe import Recipe


@dataclass(frozen=True)
class LocalRun:
    root: Path
    wall_time_s: float
    tasks: dict[str, Path]  # task name -> its folder under the pipeline root


def run_locally(recipe: Recipe, run_dir: Path, data_path: Path | None = None) -> LocalRun:
    from segflow.pipelines.train_and_serve import train_and_serve

    root = run_dir.resolve() / "pipeline"
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    started = time.monotonic()
    before = set(root.iterdir())
    train_and_serve(recipe_json=recipe_to_json(recipe), data_path=str(data_path or ""))
    (run_folder,) = set(root.iterdir()) - before
    tasks = {p.name: p for p in sorted(run_folder.iterdir()) if p.is_dir()}
    return LocalRun(run_folder, time.monotonic() - started, tasks)


def task_outputs(task_dir: Path) -> dict:
    """The executor output KFP recorded for a task: parameters and artifact metadata."""
    return json.loads((task_dir / "executor_output.json").read_text())


def artifact(task_dir: Path, name: str) -> dict:
    return task_outputs(task_dir)["artifacts"][name]["artifacts"][0]


def summary(run: LocalRun) -> dict[str, str]:
    """What a user looks for after a run: the data, the model, its quality, the reports, the archive."""
    rows: dict[str, str] = {"pipeline root": str(run.root)}
    if "prep" in run.tasks:
        dataset = artifact(run.tasks["prep"], "dataset")
        rows["dataset"] = f"{dataset['uri']} (version {dataset['metadata']['version']})"
    if "train" in run.tasks:
        model = artifact(run.tasks["train"], "run")
        rows["model"] = f"{model['metadata']['model_uri']} (version {model['metadata']['version']})"
        rows["report"] = f"{model['uri']}/eval/report.md"
        rows["report (HTML)"] = artifact(run.tasks["train"], "report")["uri"]
        for key, value in artifact(run.tasks["train"], "metrics")["metadata"].items():
            rows[f"metric: {key}"] = f"{value:.4f}" if isinstance(value, float) else str(value)
    if "package" in run.tasks:
        archive = artifact(run.tasks["package"], "archive")
        rows["TorchServe archive"] = f"{archive['uri']}/{archive['metadata']['mar']}"
        rows["archive sha256"] = archive["metadata"]["mar_sha256"]
    return rows
