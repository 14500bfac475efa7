"""docs/deploy.md followed as written, command by command, on the real node: sections 2 to 6.

Each ```bash block of those sections is typed into bash (pipefail), with the `helm` command built
from its Go module (tests/support/gobuild.py), the venv's kubectl and segflow, and a kubeconfig
for the node, in a folder where `charts/` and `k8s/` are this checkout's. What differs from a
user's session, and why:

- placeholders take real values: ACCESS_KEY / SECRET_KEY, the archive versions the docs show as
  examples (a user copies what `segflow package` printed; so does the test), image.png;
- "your S3 server" (section 2) is MinIO, built from its Go module, as Service `minio` in the
  namespace, and `127.0.0.1:9000` in the docs is its ClusterIP here;
- `segflow train quickstart ...` writes a small untrained quickstart-shaped model to the same
  URI instead of training it (training is what tests/segflow/train checks; two runs here would
  cost minutes of the suite's budget), so `segflow package` and everything after run as written;
- commands are typed one by one into one bash session (variables and background jobs carry over,
  as in a terminal); after one ending in `&` (a port-forward) the next waits for its "Forwarding
  from" line, as a user would;
- section 1 installs operators from public Helm repositories and manifests this machine cannot
  reach: the node has their CRDs instead (KubeRay's from ../shared/schemas, prometheus-operator's
  from its module), and section 7 needs Grafana, which cannot run here (test_cluster_monitoring.py
  checks the dashboard's queries against prometheus-operator's Prometheus).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import gobuild, node_images
from support.kube import kubectl
from support.real import unavailable
from support.serving import encode, noise

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "deploy.md"
NAMESPACE = "segflow"
SMALL_NODE = "--set torchserve.resources.requests.cpu=250m"  # what section 3 says to add on a 2-core node
EXAMPLE_VERSIONS = ("3f2a9c0112ab45cd", "7c41d09e5b2f8a13")  # the archive versions the docs print as examples
TRAIN = re.compile(r"^segflow train (\S+)(.*?) --out (\S+)$", re.M)


def section(number: int) -> list[str]:
    """The ```bash blocks of docs/deploy.md's section NUMBER, continuation lines joined."""
    text = DOCS.read_text()
    body = re.search(rf"^## {number}\. .*?(?=^## )", text, re.M | re.S).group(0)
    return [block.replace("\\\n", " ") for block in re.findall(r"```bash\n(.*?)```", body, re.S)]


class Session:
    """A user's shell session: one bash reading the docs' lines as they are typed, its variables and
    background jobs kept from block to block, and the values copied from what earlier commands printed."""

    def __init__(self, cwd: Path, env: dict[str, str], substitutions: dict[str, str]):
        self.cwd, self.substitutions = cwd, substitutions
        self.log: list[tuple[str, str]] = []  # each command typed, and what it printed
        self.shell = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.output: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.output.put(line) for line in self.shell.stdout], daemon=True).start()
        self._type("set -o pipefail", 10)

    def run(self, block: str, timeout: float = 600) -> str:
        """Each command of BLOCK in turn; fails at the first that exits non-zero. What they printed."""
        printed = ""
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                printed += self._command(line, timeout)
        return printed

    def printed(self, command: str) -> str:
        """What the last command starting with COMMAND printed."""
        return next(text for line, text in reversed(self.log) if line.startswith(command))

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.shell.pid, signal.SIGTERM)  # the shell and its background port-forwards
        self.shell.wait(timeout=30)

    def _command(self, line: str, timeout: float) -> str:
        for placeholder, value in self.substitutions.items():  # whole words: ACCESS_KEY, not AWS_ACCESS_KEY_ID's
            line = re.sub(rf"\b{re.escape(placeholder)}\b", lambda _, v=value: v, line)
        line = TRAIN.sub(lambda m: _stand_in_training(m.group(1), m.group(3)), line)
        status, printed = self._type(line, timeout)
        before = "".join(f"$ {command}\n{text[-1500:]}" for command, text in self.log[-2:])
        assert status == 0, f"{DOCS.name}: `{line}` exited {status}:\n{printed[-4000:]}\n--- before it:\n{before}"
        for version in re.findall(r"^archive (\w+) at", printed, re.M):
            self.substitutions[next(v for v in EXAMPLE_VERSIONS if v not in self.substitutions)] = version
        if re.search(r"&\s*(#.*)?$", line):  # a background job, maybe with a comment after it
            printed += self._until("Forwarding from", 30)  # a user types on once the port-forward says it listens
        self.log.append((line, printed))
        return printed

    def _until(self, text: str, timeout: float) -> str:
        """Output until a line holding TEXT (a background job's), or all there was after TIMEOUT seconds."""
        printed, deadline = [], time.monotonic() + timeout
        while not printed or text not in printed[-1]:
            try:
                printed.append(self.output.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                break
        return "".join(printed)

    def _type(self, line: str, timeout: float) -> tuple[int, str]:
        marker = f"__segflow_done_{secrets.token_hex(4)}__"
        self.shell.stdin.write(f"{line}\nprintf '\\n{marker} %s\\n' $?\n")
        self.shell.stdin.flush()
        printed, deadline = [], time.monotonic() + timeout
        while True:
            try:
                text = self.output.get(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                so_far = "".join(printed)[-3000:]
                raise AssertionError(f"`{line}` did not finish in {timeout:.0f} s:\n{so_far}") from None
            if text.startswith(marker):
                return int(text.split()[1]), "".join(printed)
            printed.append(text)


def _stand_in_training(recipe: str, out: str) -> str:
    return shlex.join([sys.executable, str(ROOT / "tests" / "support" / "deploy_docs.py"), recipe, out])


@pytest.fixture(scope="module")
def session(kube_node, serve_image, tmp_path_factory):
    helm = gobuild.helm()
    if not helm.ok:
        unavailable(f"no helm command: {helm.error.splitlines()[0]}")
    minio = node_images.minio()
    kube_node.load_images([serve_image, minio])
    kube_node.api.install_crds()  # what section 1 installs: KubeRay's, and the ServiceMonitor and PrometheusRule kinds
    folder = tmp_path_factory.mktemp("user")
    for name in ("charts", "k8s"):
        (folder / name).symlink_to(ROOT / name)
    (folder / "image.png").write_bytes(encode(noise(90, 120, seed=5), "PNG"))
    keys = {"ACCESS_KEY": secrets.token_hex(10), "SECRET_KEY": secrets.token_hex(20)}
    env = {**os.environ, "KUBECONFIG": str(kube_node.api.kubeconfig), "HOME": str(folder),
           "PATH": os.pathsep.join([str(helm.binaries["helm"].parent), str(Path(kubectl()).parent),
                                    str(Path(sys.executable).parent), os.environ["PATH"]])}
    user = Session(folder, env, dict(keys))
    yield user, kube_node, minio, keys
    user.close()
    kube_node.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _your_minio(node, image, keys: dict[str, str]) -> str:
    """An S3 server the docs assume you have: MinIO as Service `minio` in the namespace; its ClusterIP endpoint."""
    labels = {"app": "minio"}
    repository, tag = image.reference.rsplit(":", 1)
    node.apply([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "minio", "namespace": NAMESPACE},
         "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
             "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
             "containers": [{"name": "minio", "image": image.reference, "imagePullPolicy": "Never",
                             "args": ["server", "/data", "--address", ":9000"],
                             "env": [{"name": "MINIO_ROOT_USER", "value": keys["ACCESS_KEY"]},
                                     {"name": "MINIO_ROOT_PASSWORD", "value": keys["SECRET_KEY"]},
                                     {"name": "HOME", "value": "/tmp"}],
                             "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": 9000}},
                             "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                              {"name": "tmp", "mountPath": "/tmp"}]}],
             "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "minio", "namespace": NAMESPACE},
         "spec": {"selector": labels, "ports": [{"name": "s3", "port": 9000, "targetPort": 9000}]}},
    ])
    node.wait_ready("deployment", "minio", NAMESPACE, 180)
    address = node.kubectl("-n", NAMESPACE, "get", "service", "minio", "-o", "jsonpath={.spec.clusterIP}").stdout
    from minio import Minio

    Minio(f"{address}:9000", keys["ACCESS_KEY"], keys["SECRET_KEY"], secure=False).make_bucket("segflow")
    return f"http://{address}:9000"


def test_section_2_namespace_secret_and_a_packaged_model(session):
    user, node, minio, keys = session
    rbac, train = section(2)
    user.run(rbac)
    secret = json.loads(node.kubectl("-n", NAMESPACE, "get", "secret", "segflow-minio", "-o", "json").stdout)
    assert set(secret["data"]) == {"accesskey", "secretkey"}
    # k8s/ applied as a whole: the pipeline runner's account and role, and nothing started (no RayJob)
    assert node.kubectl("-n", NAMESPACE, "get", "serviceaccount", "segflow-pipeline-runner", "-o", "name").stdout
    assert not node.kubectl("-n", NAMESPACE, "get", "rayjobs", "-o", "name").stdout.strip()
    user.substitutions["http://127.0.0.1:9000"] = _your_minio(node, minio, keys)
    printed = user.run(train)
    assert EXAMPLE_VERSIONS[0] in user.substitutions, printed  # `segflow package` printed its version


def test_section_3_install(session):
    user, node, *_ = session
    (install,) = section(3)[:1]
    user.run(install.rstrip() + f" {SMALL_NODE}")
    assert "segflow" in node.kubectl("-n", NAMESPACE, "get", "deployment", "-o", "name").stdout


def test_section_4_check_it_predict_and_the_web_page(session):
    user, node, *_ = session
    check, web = section(4)
    printed = user.run(check)
    assert "fetched quickstart.mar" in printed and f"sha256 {user.substitutions[EXAMPLE_VERSIONS[0]]}" in printed
    printed = user.printed("segflow predict")  # the port-forward's "Handling connection" lines come between
    answer = json.loads(printed[printed.index("{"):printed.rindex("}") + 1])
    assert answer["width"] == 120 and answer["height"] == 90, answer
    mask = np.asarray(Image.open(user.cwd / "mask.png"))
    assert mask.shape[:2] == (90, 120)
    user.run(web + "\ncurl -sf http://127.0.0.1:8081/ -o page.html")
    assert "<html" in (user.cwd / "page.html").read_text().lower()


def test_section_5_scale(session):
    user, node, *_ = session
    (scale,) = section(5)
    user.run(scale)
    assert node.kubectl("-n", NAMESPACE, "get", "hpa", "segflow", "-o", "jsonpath={.spec.minReplicas}").stdout == "2"


def test_section_6_roll_out_a_new_version_and_back(session):
    user, node, *_ = session
    (rollout,) = section(6)
    user.run(rollout)
    new, old = (user.substitutions[v] for v in reversed(EXAMPLE_VERSIONS))
    node.wait_ready("deployment", "segflow", NAMESPACE, 420)  # the rollback's rollout
    served = node.kubectl("-n", NAMESPACE, "get", "deployment", "segflow", "-o", "json").stdout
    assert old in served and new not in served
