"""`segflow run`: a pipeline executed by kfp.local, each step in this interpreter or in the segflow image.

pipeline_root lives inside the run directory, so every artifact of a run (dataset, Ray
checkpoints, model, reports, archive) is in one folder the user can inspect or delete.
The `subprocess` runner runs the steps in this interpreter; the `docker` runner runs each one in the
image a cluster runs (segflow.components.BASE_IMAGE), through a Docker-compatible engine API.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from kfp import local

from segflow.config import recipe_to_json
from segflow.config.recipe import Recipe
from segflow.errors import ConfigError, PipelineError
from segflow.layout import RUN, ModelRecord

# What the steps read from the environment (segflow.store.settings, segflow.serving.deploy): a container
# gets these from the user's environment, as a step in this interpreter does.
PASSED_ENVIRONMENT = ("SEGFLOW_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                      "AWS_REGION", "SEGFLOW_TORCHSERVE_MANAGEMENT_URL", "SEGFLOW_TORCHSERVE_MANAGEMENT_KEY")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"  # the docker SDK's, when DOCKER_HOST is unset


@dataclass(frozen=True)
class LocalRun:
    root: Path
    wall_time_s: float
    tasks: dict[str, Path]  # task name -> its folder under the pipeline root


def run_locally(recipe: Recipe, run_dir: Path, data_path: Path | None = None, pipeline: str = "train_and_serve",
                arguments: dict | None = None, runner: str = "subprocess") -> LocalRun:
    """Run one of the compiled pipelines (segflow.pipelines.compile.pipelines) with `arguments` on top of the recipe,
    its steps run by `runner` (one of RUNNERS)."""
    from segflow.pipelines.compile import pipelines

    known = pipelines()
    if pipeline not in known:
        raise ConfigError(f"no pipeline {pipeline!r}; the pipelines are: {', '.join(known)}")
    if runner not in RUNNERS:
        raise ConfigError(f"no runner {runner!r}; the runners are: {', '.join(RUNNERS)}")
    raw_data = data_path or recipe.data.path
    data = Path(raw_data).resolve() if raw_data else None  # absolute: a container sees it at the same path
    root = run_dir.resolve() / "pipeline"
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=RUNNERS[runner](data), pipeline_root=str(root), raise_on_error=True)
    started = time.monotonic()
    before = set(root.iterdir())
    known[pipeline](recipe_json=recipe_to_json(recipe), data_path=str(data or ""), **(arguments or {}))
    (run_folder,) = set(root.iterdir()) - before
    tasks = {p.name: p for p in sorted(run_folder.iterdir()) if p.is_dir()}
    return LocalRun(run_folder, time.monotonic() - started, tasks)


def subprocess_runner(data: Path | None) -> local.SubprocessRunner:
    """Steps in this interpreter, with what this venv has installed; they read `data` where it is."""
    return local.SubprocessRunner(use_venv=False)


def docker_runner(data: Path | None) -> local.DockerRunner:
    """Steps in the segflow image, through the engine DOCKER_HOST names; fails early, saying what to start or build.

    kfp mounts the pipeline root into each container at its own path; `data` (the raw dataset folder)
    is mounted the same way, read-only. The containers run as this process's uid and gid rather than the
    image's uid 1000: the folders they write then belong to the user who ran `segflow run`, as with the
    subprocess runner, with no chmod or chown of the run directory (opening it to every user, or needing
    root). That uid may have no home in the image, so HOME is /tmp (Ray writes ~/.ray, NNI
    ~/nni-experiments). The host's network, so the steps reach the same servers (S3, TorchServe) at
    the same addresses as a step in this interpreter.
    """
    from docker.types import Mount
    from kfp.local import docker_task_handler

    from segflow.components import BASE_IMAGE

    _require_image(BASE_IMAGE)
    docker_task_handler.run_docker_container = _run_container
    environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
    mounts = [Mount(target=str(data), source=str(data), type="bind", read_only=True)] if data else []
    return local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}", network_mode="host", mounts=mounts,
                              environment=environment | {"HOME": "/tmp"})


def _require_image(image: str) -> None:
    """A PipelineError saying how to fix it when no engine answers at DOCKER_HOST or it lacks `image`."""
    import docker

    host = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)
    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        raise PipelineError(
            f"--runner docker: no Docker-compatible engine answers at {host} ({exc}). Start one, e.g. podman's: "
            "`podman system service --time=0 unix:///run/podman/podman.sock` and "
            "`export DOCKER_HOST=unix:///run/podman/podman.sock`, or use the default --runner subprocess") from None
    with closing(client):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise PipelineError(
                f"--runner docker: the engine at {host} has no image {image}. Build it with `make images`, then load "
                "its archive (~/.cache/segflow/images/archives/segflow/TAG.tar) with `podman load -i` or "
                "`docker load -i`, or set SEGFLOW_IMAGE to an image the engine has") from None


def _run_container(client, image: str, command: list[str], volumes: dict, **container_run_args) -> int:
    """kfp 2.17's docker_task_handler.run_docker_container, less the race that loses a step's exit status.

    kfp starts each container with auto_remove and reads its logs and exit status afterwards; when the
    engine has removed it first, kfp takes a 404 for success and fails on podman's 500
    (kubeflow/pipelines#13332, fixed by the open #13907 in the same way as here): a failed step
    looked successful, a quick one could crash the run, and the step's last log lines were lost.
    Here the container stays until its logs are read and its status is known. kfp's image pull is
    left out: docker_runner checked the image is there. Remove when kfp ships the fix.
    """
    container = client.containers.run(image=image, command=command, volumes=volumes, detach=True,
                                      **container_run_args)
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="", flush=True)
        return container.wait()["StatusCode"]
    finally:
        container.remove(force=True)


RUNNERS = {"subprocess": subprocess_runner, "docker": docker_runner}


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
