"""Shared fixtures: real servers on loopback (S3) and paths to the shared real datasets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.net import free_port, wait_for_port

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = Path(os.environ.get("SEGFLOW_SHARED_DATASETS", SHARED / "datasets"))


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening: a server that is down."""
    return free_port()


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    kind: str  # "minio" or "moto": which server answered, reported in the test output

    def env(self) -> dict[str, str]:
        return {
            "SEGFLOW_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """A real S3-compatible server on a free loopback port for the whole session."""
    port = free_port()
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    log = open(tmp_path_factory.mktemp("s3") / "server.log", "w")
    process = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        print(f"\n[s3] moto S3 server on 127.0.0.1:{port}", file=sys.stderr)
        yield S3Server(f"http://127.0.0.1:{port}", "testing-key", "testing-secret", "moto")
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


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
