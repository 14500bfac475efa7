"""Shared fixtures: real servers (S3, a Kubernetes API, a whole Kubernetes node) and the shared real datasets.

Where a real server cannot be had here, its tests skip saying why (support/real.py), or fail when
SEGFLOW_REQUIRE_REAL=1, as in CI.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from support import node_images
from support.kube import KubeAPI, KubeUnavailable
from support.kube import kube_api as start_kube_api
from support.net import free_port
from support.node import Node
from support.node import node as start_node
from support.real import REQUIRED, unavailable
from support.s3server import S3Server
from support.s3server import s3_server as start_s3_server

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = Path(os.environ.get("SEGFLOW_SHARED_DATASETS", SHARED / "datasets"))


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening: a server that is down."""
    return free_port()


SERVERS: dict[str, str] = {}  # which real server (or stand-in) each kind was, for the summary


def pytest_terminal_summary(terminalreporter):
    for kind, line in SERVERS.items():
        terminalreporter.write_line(f"[servers] {kind}: {line}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """A real S3 server on a free loopback port for the whole session: MinIO, or moto where MinIO cannot be built."""
    with start_s3_server(tmp_path_factory.mktemp("s3")) as server:
        SERVERS["S3"] = server.describe()
        if server.kind != "minio" and REQUIRED:
            pytest.fail(f"SEGFLOW_REQUIRE_REAL=1, and MinIO could not be built: {server.why_not_minio}",
                        pytrace=False)
        print(f"\n[s3] {server.describe()}", file=sys.stderr)
        yield server


@pytest.fixture
def minio_server(s3_server) -> S3Server:
    """The session's S3 server when it is MinIO; a skip saying why for the moto stand-in."""
    if s3_server.kind != "minio":
        unavailable(f"needs MinIO (moto stands in: {s3_server.why_not_minio.splitlines()[0]})")
    return s3_server


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory) -> KubeAPI:
    """A real kube-apiserver with etcd on loopback (no kubelet); a skip saying why where it cannot be built."""
    try:
        with start_kube_api(tmp_path_factory.mktemp("kube")) as api:
            SERVERS["Kubernetes API"] = api.describe()
            yield api
    except KubeUnavailable as exc:
        SERVERS["Kubernetes API"] = f"none, the tests that need it skipped: {str(exc).splitlines()[0]}"
        unavailable(f"no kube-apiserver: {exc}")


@pytest.fixture(scope="session")
def kube_node(tmp_path_factory) -> Node:
    """A real single-node Kubernetes cluster for the session (support/node.py); unavailable() says why not."""
    from imagebuild import ImageBuildError, cache_dir

    try:
        started = time.monotonic()
        infra = node_images.node_images()
        images_s = time.monotonic() - started
        with start_node(tmp_path_factory.mktemp("node"), infra, cache_dir() / "containerd") as node:
            ready_s = time.monotonic() - started - images_s
            SERVERS["Kubernetes node"] = (f"{node.describe()}; its images in {images_s:.0f} s, "
                                          f"ready {ready_s:.0f} s later")
            yield node
            stopping = time.monotonic()
        SERVERS["Kubernetes node"] += f", torn down in {time.monotonic() - stopping:.0f} s"
    except (KubeUnavailable, node_images.ImagesUnavailable, ImageBuildError) as exc:
        SERVERS["Kubernetes node"] = f"none, the tests that need it skipped: {str(exc).splitlines()[0]}"
        unavailable(f"no Kubernetes node: {exc}")


def _project_image(name: str):
    """NAME of `make images`, built by tools/imagebuild at the current sources' tag (cached: seconds when built)."""
    from imagebuild import ImageBuildError, build, project

    try:
        return build(project.images()[name], project.tag())
    except ImageBuildError as exc:
        unavailable(f"the {name} image cannot be built here: {exc}")


@pytest.fixture(scope="session")
def segflow_image():
    """segflow: the pipeline steps, the Ray head and workers of a RayJob."""
    return _project_image("segflow")


@pytest.fixture(scope="session")
def serve_image():
    """segflow-serve: the chart's TorchServe, gateway and web page."""
    return _project_image("segflow-serve")


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> S3Server:
    """S3 settings in the environment, as a user would export them."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture
def bucket(s3_env, request) -> str:
    """A fresh, empty bucket per test."""
    from minio import Minio

    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid() % 1000}"
    client = Minio(s3_env.endpoint.removeprefix("http://"), access_key=s3_env.access_key,
                   secret_key=s3_env.secret_key, secure=False)
    if not client.bucket_exists(name):
        client.make_bucket(name)
    return name


@pytest.fixture
def real_dataset():
    """real_dataset(name) -> a real dataset folder from ../shared/datasets, or a skip saying why."""

    def find(name: str) -> Path:
        path = DATASETS / name
        if not path.is_dir():
            pytest.skip(f"real dataset {name} not present at {path} (set SEGFLOW_SHARED_DATASETS)")
        return path

    return find
