"""The S3 server the tests talk to: a real MinIO built from its Go module, moto's S3 server as the fallback.

MinIO runs as a single-drive server on a free loopback port with its data in a temporary folder.
moto stands in only where MinIO cannot be had (no Go toolchain, or its build failed); it accepts
any credentials and has no bucket policies, so the checks of those skip there and say why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support import gobuild
from support.net import free_port, logged_process, wait_for_port

ROOT_USER, ROOT_PASSWORD = "segflow-root", "segflow-root-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    kind: str  # "minio" or "moto": which server answered, reported in the test output
    version: str = ""
    why_not_minio: str = ""  # set when moto stands in

    def env(self) -> dict[str, str]:
        return {
            "SEGFLOW_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    @property
    def address(self) -> str:
        return self.endpoint.removeprefix("http://")

    def describe(self) -> str:
        if self.kind == "minio":
            return f"MinIO {self.version} (built from github.com/minio/minio) on {self.address}"
        return f"moto's S3 server on {self.address}, standing in for MinIO: {self.why_not_minio.splitlines()[0]}"


@contextlib.contextmanager
def s3_server(folder: Path) -> Iterator[S3Server]:
    """MinIO when it builds here, moto otherwise; stopped on exit."""
    built = gobuild.minio()
    if built.ok:
        with _minio(built, folder) as server:
            yield server
    else:
        with _moto(folder, built.error) as server:
            yield server


def read_only_user(server: S3Server, bucket: str) -> tuple[str, str]:
    """(access key, secret key) of a new MinIO user whose only policy is read (get and list) on BUCKET."""
    from minio.credentials import StaticProvider
    from minio.minioadmin import MinioAdmin

    admin = MinioAdmin(endpoint=server.address, credentials=StaticProvider(server.access_key, server.secret_key),
                       secure=False)
    name, secret = f"reader-{bucket}"[:60], "reader-secret-123"
    admin.policy_add(name, policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [f"arn:aws:s3:::{bucket}"]}]})
    admin.user_add(name, secret)
    admin.attach_policy([name], user=name)
    return name, secret


@contextlib.contextmanager
def _minio(built: gobuild.Built, folder: Path) -> Iterator[S3Server]:
    port = free_port()
    env = {**os.environ, "MINIO_ROOT_USER": ROOT_USER, "MINIO_ROOT_PASSWORD": ROOT_PASSWORD,
           "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_CI_CD": "1"}
    command = [str(built.binaries["minio"]), "server", str(folder / "data"), "--address", f"127.0.0.1:{port}",
               "--certs-dir", str(folder / "certs"), "--quiet"]
    with logged_process(command, env, folder / "minio.log") as process:
        wait_for_port(port, process, timeout=60)
        _wait_ready(f"http://127.0.0.1:{port}/minio/health/ready", process, folder / "minio.log")
        yield S3Server(f"http://127.0.0.1:{port}", ROOT_USER, ROOT_PASSWORD, "minio", built.version)


@contextlib.contextmanager
def _moto(folder: Path, why: str) -> Iterator[S3Server]:
    port = free_port()
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    with logged_process([moto, "-H", "127.0.0.1", "-p", str(port)], dict(os.environ), folder / "moto.log") as process:
        wait_for_port(port, process)
        yield S3Server(f"http://127.0.0.1:{port}", "testing-key", "testing-secret", "moto", why_not_minio=why)


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout} s: {log.read_text()[-2000:]}")
