"""Run TorchServe as a child process whose every file lives in one run directory.

TorchServe's defaults scatter state across the machine: a pid file and worker sockets in /tmp
(shared by every TorchServe on the host), logs and key_file.json in the launch directory,
gRPC on 7070/7071 and inference on 8080 for all interfaces. Here each server gets

    RUN_DIR/config.properties  generated: loopback-only addresses, token auth on, Prometheus metrics
    RUN_DIR/key_file.json      the management / inference / API keys (TorchServe writes it, mode 0600)
    RUN_DIR/model-store/       the verified .mar
    RUN_DIR/tmp/               TMPDIR: pid file, worker sockets, unpacked archives
    RUN_DIR/logs/              TorchServe's logs (ts_log, model_log, access_log, metrics)
    RUN_DIR/torchserve.log     the launcher's console output

and runs in its own process group, so `stop` ends the launcher, the JVM and the Python workers
together and nothing outlives it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from segflow.errors import ServingError

METRICS_YAML = Path(__file__).with_name("metrics.yaml")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # requests and answers; a larger request gets TorchServe's 413
MAX_RUN_DIR_CHARS = 80  # sockets go to RUN_DIR/tmp/.ts.sock.PORT and a unix socket path holds 107 bytes
JAVA_HEAP = "-Xmx1g"
KEY_FILE = "key_file.json"
# The worker's idle OpenMP threads otherwise spin (libgomp's default) on the cores the JVM and the
# clients need between batches: on 2 busy cores that cost 2.4x CPU per request and 3x latency.
OMP_WAIT_POLICY = "PASSIVE"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    @classmethod
    def pick(cls, inference: int | None = None, management: int | None = None, metrics: int | None = None) -> Ports:
        """The given ports, free loopback ports for the rest."""
        return cls(inference or free_port(), management or free_port(), metrics or free_port(),
                   free_port(), free_port())


@dataclass(frozen=True)
class Endpoints:
    model: str
    inference: str
    management: str
    metrics: str
    key_file: Path
    logs: Path

    @property
    def predictions(self) -> str:
        return f"{self.inference}/predictions/{self.model}"


def config_properties(ports: Ports, model_store: Path, mar_name: str) -> str:
    """TorchServe's config: every listener on 127.0.0.1, token auth on, Prometheus metrics from metrics.yaml."""
    settings = {
        "inference_address": f"http://127.0.0.1:{ports.inference}",
        "management_address": f"http://127.0.0.1:{ports.management}",
        "metrics_address": f"http://127.0.0.1:{ports.metrics}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_management_address": "127.0.0.1",
        "grpc_inference_port": ports.grpc_inference,
        "grpc_management_port": ports.grpc_management,
        "model_store": model_store,
        "load_models": mar_name,
        "default_workers_per_model": 1,
        "disable_token_authorization": "false",
        # `segflow deploy` registers new versions through the management API (loopback, management key).
        "enable_model_api": "true",
        "enable_envvars_config": "false",
        "install_py_dep_per_model": "false",
        "metrics_mode": "prometheus",
        "metrics_config": METRICS_YAML,
        "max_request_size": MAX_MESSAGE_BYTES,
        "max_response_size": MAX_MESSAGE_BYTES,
        "vmargs": JAVA_HEAP,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class TorchServe:
    """One TorchServe serving one .mar from `run_dir`; a context manager that always stops it."""

    def __init__(self, mar: Path, model: str, run_dir: Path, ports: Ports | None = None):
        self.mar, self.model = Path(mar), model
        self.run_dir = Path(run_dir).resolve()
        self.ports = ports or Ports.pick()
        self.process: subprocess.Popen | None = None

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(self.model, f"http://127.0.0.1:{self.ports.inference}",
                         f"http://127.0.0.1:{self.ports.management}", f"http://127.0.0.1:{self.ports.metrics}",
                         self.run_dir / KEY_FILE, self.run_dir / "logs")

    def start(self, timeout: float = 180.0) -> Endpoints:
        """Launch and wait until the model's worker is ready; on failure stop and raise with the log tail."""
        self._prepare()
        env = {**os.environ, "TMPDIR": str(self.run_dir / "tmp"), "TEMP": str(self.run_dir / "tmp"),
               "LOG_LOCATION": str(self.run_dir / "logs"), "METRICS_LOCATION": str(self.run_dir / "logs"),
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY)}
        command = [sys.executable, "-m", "ts.model_server", "--start", "--foreground", "--ncs",
                   "--ts-config", str(self.run_dir / "config.properties"),
                   "--model-store", str(self.run_dir / "model-store")]
        with open(self.run_dir / "torchserve.log", "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.run_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _prepare(self) -> None:
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ServingError("TorchServe needs Java 17 and none is on PATH; install it "
                               "(apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME")
        if len(str(self.run_dir)) > MAX_RUN_DIR_CHARS:
            raise ServingError(f"run directory {self.run_dir} is too long a path for TorchServe's unix sockets "
                               f"(at most {MAX_RUN_DIR_CHARS} characters); choose a shorter --run-dir")
        _refuse_running(self.run_dir / "tmp" / ".model_server.pid", self.run_dir)
        for folder in ("model-store", "tmp", "logs"):
            (self.run_dir / folder).mkdir(parents=True, exist_ok=True)
        (self.run_dir / KEY_FILE).unlink(missing_ok=True)
        if self.mar.resolve() != (self.run_dir / "model-store" / self.mar.name).resolve():
            shutil.copyfile(self.mar, self.run_dir / "model-store" / self.mar.name)
        (self.run_dir / "config.properties").write_text(
            config_properties(self.ports, self.run_dir / "model-store", self.mar.name))

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServingError(f"TorchServe exited with status {self.process.returncode} while starting; "
                                   f"{self.log_tail()}")
            failure = self._worker_failure()
            if failure:  # TorchServe would retry a failing model load forever
                raise ServingError(f"the model worker failed to load {self.model!r}:\n{failure}")
            if self._worker_ready():
                return
            time.sleep(0.5)
        raise ServingError(f"model {self.model!r} was not ready after {timeout:.0f} s; {self.log_tail()}")

    def _worker_ready(self) -> bool:
        try:
            key = self.key("management")
        except ServingError:  # not written yet, or half written
            return False
        request = urllib.request.Request(f"{self.endpoints.management}/models/{self.model}",
                                         headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                workers = json.load(response)[0].get("workers", [])
        except (urllib.error.URLError, OSError, ValueError, IndexError):
            return False
        return any(w.get("status") == "READY" for w in workers)

    def _worker_failure(self) -> str | None:
        """The handler's traceback if a worker died while loading the model, else None."""
        log = self.run_dir / "logs" / "model_log.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        if "Backend worker process died" not in text:
            return None
        lines = [line.split(" MODEL_LOG - ", 1)[-1] for line in text.splitlines()]
        start = max((i for i, line in enumerate(lines) if line.startswith("Traceback")), default=0)
        return "\n".join(lines[start : start + 40])

    def key(self, kind: str = "inference") -> str:
        """The current `management`, `inference` or `API` key from RUN_DIR/key_file.json."""
        return read_keys(self.run_dir / KEY_FILE)[kind]

    def log_tail(self, lines: int = 30) -> str:
        """The end of the model log (handler errors) or, failing that, TorchServe's own log."""
        for path in (self.run_dir / "logs" / "model_log.log", self.run_dir / "torchserve.log"):
            if path.is_file() and path.stat().st_size:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                return f"last lines of {path}:\n" + "\n".join(tail)
        return f"no log was written under {self.run_dir}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self) -> None:
        """Block while TorchServe runs (returns only if it exits on its own; Ctrl-C raises KeyboardInterrupt)."""
        while self.running:
            time.sleep(0.5)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the whole process group (launcher, JVM, workers), then SIGKILL what is left."""
        if self.process is None:
            return
        group = self.process.pid
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _group_alive(group) and time.monotonic() < deadline:
            self.process.poll()  # reap the launcher so the group can empty
            time.sleep(0.2)
        _signal_group(group, signal.SIGKILL)
        self.process.wait()
        self.process = None
        (self.run_dir / "tmp" / ".model_server.pid").unlink(missing_ok=True)

    def __enter__(self) -> TorchServe:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def read_keys(key_file: Path) -> dict[str, str]:
    """{'management': ..., 'inference': ..., 'API': ...} from a TorchServe key_file.json."""
    try:
        raw = json.loads(Path(key_file).read_text())
        return {kind: entry["key"] for kind, entry in raw.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServingError(f"cannot read keys from {key_file} ({exc}); it is the key_file.json in the run "
                           "directory of a running `segflow serve`") from None


def _refuse_running(pid_file: Path, run_dir: Path) -> None:
    if not pid_file.is_file():
        return
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        pid_file.unlink(missing_ok=True)
        return
    if "org.pytorch.serve.ModelServer" in _cmdline(pid):
        raise ServingError(f"a TorchServe (pid {pid}) is already running from {run_dir}; "
                           "stop it or choose another --run-dir")
    pid_file.unlink(missing_ok=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(group: int) -> bool:
    """Whether a live (non-zombie) process is left in the group; /proc, since kill(0) also finds zombies."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if state != "Z" and int(pgrp) == group:
            return True
    return False
