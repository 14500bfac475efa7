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
from segflow.errors import ConfigError
from segflow.layout import RUN, ModelRecord


@dataclass(frozen=True)
class LocalRun:
    root: Path
    wall_time_s: float
    tasks: dict[str, Path]  # task name -> its folder under the pipeline root


def run_locally(recipe: Recipe, run_dir: Path, data_path: Path | None = None, pipeline: str = "train_and_serve",
                arguments: dict | None = None) -> LocalRun:
    """Run one of the compiled pipelines (segflow.pipelines.compile.pipelines) with `arguments` on top of the recipe."""
    from segflow.pipelines.compile import pipelines

    known = pipelines()
    if pipeline not in known:
        raise ConfigError(f"no pipeline {pipeline!r}; the pipelines are: {', '.join(known)}")
    root = run_dir.resolve() / "pipeline"
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    started = time.monotonic()
    before = set(root.iterdir())
    known[pipeline](recipe_json=recipe_to_json(recipe), data_path=str(data_path or ""), **(arguments or {}))
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
        rows["model"] = _model(model)
        rows["report"] = f"{model['uri']}/{RUN.eval.report}"
        rows["report (HTML)"] = artifact(run.tasks["train"], "report")["uri"]
        rows.update(_metrics(run.tasks["train"], "metric"))
    if "distill" in run.tasks:
        student = artifact(run.tasks["distill"], "run")
        rows["student"] = f"{ModelRecord.from_metadata(student['metadata']).uri} ({student['metadata']['model']})"
        rows["distillation report"] = artifact(run.tasks["distill"], "report")["uri"]
        rows.update(_metrics(run.tasks["distill"], "student metric"))
    if "tune" in run.tasks:
        best = artifact(run.tasks["tune"], "run")
        rows["best trial's model"] = _model(best)
        found = best["metadata"]
        rows["search"] = f"{found['backend']} / {found['algo']}, best trial {found['best_trial']}"
        rows["search report (HTML)"] = artifact(run.tasks["tune"], "report")["uri"]
        rows.update(_metrics(run.tasks["tune"], "metric"))
    if "nas" in run.tasks:
        searched = artifact(run.tasks["nas"], "run")
        rows["searched model"] = _model(searched)
        rows["architecture"] = searched["metadata"]["architecture"]
        rows["search report (HTML)"] = artifact(run.tasks["nas"], "report")["uri"]
        rows.update(_metrics(run.tasks["nas"], "metric"))
    if "package" in run.tasks:
        archive = artifact(run.tasks["package"], "archive")
        rows["TorchServe archive"] = f"{archive['uri']}/{archive['metadata']['mar']}"
        rows["archive sha256"] = archive["metadata"]["mar_sha256"]
        rows["deploy"] = _deployment(run)
    return rows


def _model(run_artifact: dict) -> str:
    record = ModelRecord.from_metadata(run_artifact["metadata"])
    return f"{record.uri} (version {record.version})"


def _metrics(task_dir: Path, label: str) -> dict[str, str]:
    values = artifact(task_dir, "metrics")["metadata"]
    return {f"{label}: {k}": f"{v:.4f}" if isinstance(v, float) else str(v) for k, v in values.items()}


def _deployment(run: LocalRun) -> str:
    if "deploy" not in run.tasks:
        return "skipped: the quality metric is below deploy_min_metric"
    release = artifact(run.tasks["deploy"], "release")["metadata"]
    if release["mode"] == "helm":
        return release["helm_command"]
    return f"{release['name']} version {release['version']} is the default on {release['management_url']}"
