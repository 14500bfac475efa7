"""`segflow run --runner docker`: kfp.local's DockerRunner runs every train_and_serve step in the segflow image.

The engine is a real one: podman's Docker-compatible API (`podman system service`) on a socket of
this test's own, serving the storage `make images` builds into, so the image is the one the image
build made for the current tree (conftest's segflow_image).
The same tiny quickstart then runs with the default subprocess runner, and both must agree.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from support.real import unavailable

pytestmark = pytest.mark.slow
# Small enough for two runs in about two minutes on 2 cores; enough epochs that the model learns something.
TINY = ["data.num_images=64", "data.image_size=[32,32]", "training.epochs=4", "training.batch_size=8",
        "model.params={depth: 2, width: 8}"]
SERVICE_START_S = 60


@pytest.fixture(scope="module")
def segflow_reference(segflow_image) -> str:
    return segflow_image.reference


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory, segflow_reference) -> str:
    """DOCKER_HOST for podman's Docker-compatible API on a socket in a temporary folder, stopped afterwards.

    It serves the image build's podman storage, with the build's settings (tools/imagebuild/podman.py:
    runc, cgroupfs, no default ulimits), so the containers see the images `make images` made.
    """
    import docker
    from imagebuild import ImageBuildError, cache_dir
    from imagebuild.podman import Podman

    try:
        env = Podman(cache_dir() / "podman").env
    except ImageBuildError as exc:
        unavailable(f"no podman here: {exc}")
    folder = tmp_path_factory.mktemp("podman")
    host = f"unix://{folder / 'podman.sock'}"
    command = ["podman", "system", "service", "--time=0", host]
    with (folder / "service.log").open("w") as log, subprocess.Popen(command, env=env, stdout=log,
                                                                     stderr=subprocess.STDOUT) as service:
        try:
            _wait_for_engine(host, service, folder / "service.log")
            with closing(docker.DockerClient(base_url=host)) as client:
                if not client.images.list(name=segflow_reference):
                    unavailable(f"{segflow_reference} is not in the image build's podman storage")
            yield host
        finally:
            service.terminate()
            service.wait(timeout=30)


def _wait_for_engine(host: str, service: subprocess.Popen, log: Path) -> None:
    import docker

    deadline = time.monotonic() + SERVICE_START_S
    while time.monotonic() < deadline:
        if service.poll() is not None:
            unavailable(f"`podman system service` exited ({service.returncode}): {log.read_text()[-2000:]}")
        try:
            with closing(docker.DockerClient(base_url=host)) as client:
                client.ping()
                return
        except docker.errors.DockerException:
            time.sleep(0.2)
    unavailable(f"`podman system service` did not answer on {host} within {SERVICE_START_S} s")


def segflow_run(root: Path, runner: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`segflow run quickstart --runner RUNNER` on the tiny settings, as a user runs it."""
    return segflow("run", "quickstart", "--run-dir", str(root), "--runner", runner,
                   *[a for t in TINY for a in ("--set", t)], env=env)


def segflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "segflow"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**env, "COLUMNS": "250"})


def _error(result: subprocess.CompletedProcess) -> str:
    """The CLI's error message on one line (the terminal wraps it)."""
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    return " ".join(result.stderr.split())


def _succeeded(result: subprocess.CompletedProcess, root: Path) -> Path:
    start = result.stdout.rfind("Traceback (most recent call last)")
    assert result.returncode == 0, result.stdout[start:start + 4000] + result.stderr[-3000:]
    (run,) = (root / "pipeline").iterdir()
    return run


class ContainerStarts:
    """The engine's own record of the containers it started (its event stream), while the block runs."""

    def __init__(self, host: str):
        import docker

        self.client = docker.DockerClient(base_url=host)
        self.images: list[str] = []

    def __enter__(self) -> "ContainerStarts":
        self.stream = self.client.events(decode=True, filters={"type": "container", "event": "start"})
        self.thread = threading.Thread(target=lambda: self.images.extend(e["from"] for e in self.stream), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1)  # the last step's start event is in the stream before the run ends; let the reader take it
        self.stream.close()
        self.client.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, docker_host, segflow_reference):
    """The same recipe run with --runner docker and with the default subprocess runner: their run folders."""
    env = {**os.environ, "DOCKER_HOST": docker_host, "SEGFLOW_IMAGE": segflow_reference}
    docker_root, subprocess_root = tmp_path_factory.mktemp("docker-run"), tmp_path_factory.mktemp("subprocess-run")
    with ContainerStarts(docker_host) as started:
        in_docker = _succeeded(segflow_run(docker_root, "docker", env), docker_root)
    in_subprocess = _succeeded(segflow_run(subprocess_root, "subprocess", env), subprocess_root)
    return in_docker, in_subprocess, started.images


def _artifact(run: Path, task: str, name: str) -> dict:
    return json.loads((run / task / "executor_output.json").read_text())["artifacts"][name]["artifacts"][0]


def test_every_step_runs_in_a_container_of_the_segflow_image(runs, segflow_reference):
    """The engine started one segflow-image container per step (other users of the same storage may add
    more, never fewer), and what the steps wrote belongs to the user who ran `segflow run`."""
    in_docker, _, started = runs
    steps = [task for task in in_docker.iterdir() if task.is_dir()]
    assert {task.name for task in steps} >= {"prep", "train", "evaluate", "package", "deploy"}
    assert started.count(segflow_reference) >= len(steps)
    written = list(in_docker.rglob("*"))
    assert written and {path.stat().st_uid for path in written} == {os.getuid()}


def test_docker_and_subprocess_runners_give_the_same_dataset_and_model(runs):
    """Training is deterministic on CPU (seeded, the same torch build in the image and the venv): the model
    version is the sha256 of the weights, so equal versions mean bitwise-equal weights, and equal metrics."""
    in_docker, in_subprocess, _ = runs
    for task, name in (("prep", "dataset"), ("train", "run")):
        assert _artifact(in_docker, task, name)["metadata"]["version"] == \
            _artifact(in_subprocess, task, name)["metadata"]["version"]
    docker_metrics = _artifact(in_docker, "train", "metrics")["metadata"]
    assert docker_metrics == _artifact(in_subprocess, "train", "metrics")["metadata"]
    assert docker_metrics["miou"] > 0.5  # it learned the shapes ("all background" scores 0.2 on these images)


def test_no_engine_at_docker_host_says_how_to_start_one(tmp_path):
    silent = f"unix://{tmp_path / 'nothing.sock'}"
    error = _error(segflow_run(tmp_path, "docker", {**os.environ, "DOCKER_HOST": silent}))
    assert f"no Docker-compatible engine answers at {silent}" in error
    assert "podman system service --time=0 unix:///run/podman/podman.sock" in error
    assert not (tmp_path / "pipeline").exists() or not any((tmp_path / "pipeline").iterdir())


def test_an_engine_without_the_image_says_to_build_it(tmp_path, docker_host, segflow_reference):
    missing = f"{segflow_reference}-not-built"
    env = {**os.environ, "DOCKER_HOST": docker_host, "SEGFLOW_IMAGE": missing}
    error = _error(segflow_run(tmp_path, "docker", env))
    assert f"has no image {missing}" in error and "make images" in error


def test_a_step_failing_in_its_container_stops_the_run_with_its_own_error(tmp_path, docker_host, segflow_reference):
    """prep fails in its container: the data folder it is given (mounted read-only) holds no Fashion-MNIST.
    The run stops there with kfp's task failure, and the log holds the step's traceback, from the image's
    install (/opt/segflow), naming the folder as the container saw it."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = {**os.environ, "DOCKER_HOST": docker_host, "SEGFLOW_IMAGE": segflow_reference}
    result = segflow("run", "fashion", "--run-dir", str(tmp_path), "--runner", "docker", "--data", str(empty), env=env)
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert result.returncode == 1
    assert "Inner task failed: 'prep'" in " ".join(output.split())
    assert 'File "/opt/segflow/segflow/' in output
    assert f"DataError: {empty}/train-images-idx3-ubyte.gz does not exist" in output
    (run,) = (tmp_path / "pipeline").iterdir()
    assert not (run / "train").exists()
