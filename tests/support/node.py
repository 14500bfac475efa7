"""A real single-node Kubernetes cluster for the tests, started once per session and torn down without a trace.

Everything runs for real on this machine: etcd and kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet and kube-proxy (iptables mode), all built from the pinned
k8s.io/kubernetes module (tools/kubernetes); Debian's containerd 1.6 with runc (cgroupfs, as the
machine has cgroup v1); Debian's CNI plugins (a bridge and host-local addresses); CoreDNS,
built from its Go module, as the cluster DNS. No registry is reachable, so every image comes from
an archive (`make images`, tests/support/node_images.py) imported into containerd, and nothing is
ever pulled.

Networking stays inside this machine: pods get addresses on one bridge (`sfnode0`, POD_CIDR) in
network namespaces containerd creates; the API server and the kubelet listen on the bridge's own
address, where both the host and the pods reach them; a route sends the Service range into the
bridge, so the test process reaches ClusterIP Services through kube-proxy's rules as a pod does.

Needs root. One node per machine at a time (the bridge, iptables chains and kube-proxy are
global), so sessions queue on a lock file. Teardown deletes every pod through the API (the kubelet
stops them and CNI releases their addresses), stops the components, runs `kube-proxy --cleanup`,
and puts back the bridge, route, sysctls and cgroups as they were; then it checks that no process,
mount, interface or iptables rule of the node is left, removes what is, and fails saying what it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from support import gobuild
from support.kube import KubeAPI, KubeUnavailable, control_plane, write_kubeconfig
from support.net import free_port, logged_process
from support.pki import CA

NODE_NAME = "segflow-node"
BRIDGE = "sfnode0"
CNI_NETWORK = "segflow-node"  # CNI names the network in the comment of each rule it adds for a pod
POD_CIDR, NODE_IP = "10.244.0.0/24", "10.244.0.1"
SERVICE_CIDR, DNS_IP = "10.96.0.0/24", "10.96.0.10"
API_PORT, KUBELET_PORT = 6443, 10250
LOCK = Path("/run/segflow-node.lock")
CGROUP_ROOT = "segflow-node"  # the kubelet's cgroupRoot: every pod's cgroups live below it, in every hierarchy
CGROUPS = Path("/sys/fs/cgroup")
# Kernel settings the node changes (forwarding and bridge netfilter for pod and Service traffic; the
# kubelet's own "kernel defaults"): recorded before, put back after.
SYSCTLS = ["net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
           "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"]
IPTABLES_TABLES = ("filter", "nat", "mangle")


class NodeUnavailable(KubeUnavailable):
    """A part the node needs is missing here (not root, no containerd/runc/CNI plugins, a Go build failed)."""


@dataclass
class Node:
    """The running node: its API (kubectl, clients) and its container runtime (images)."""

    api: KubeAPI
    folder: Path
    socket: Path  # containerd's
    versions: dict[str, str] = field(default_factory=dict)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        return self.api.kubectl(*args, stdin=stdin, check=check, timeout=timeout)

    def apply(self, objects: list[dict]) -> str:
        documents = yaml.safe_dump_all(objects, sort_keys=False)
        return self.kubectl("apply", "--server-side", "--field-manager=segflow-tests", "-f", "-",
                            stdin=documents).stdout

    def ctr(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def load_images(self, images: list) -> list[str]:
        """Import the image archives containerd lacks (tags name content here, so a known tag is the same image).

        Other tags of the same repositories are removed first: containerd's store is kept between
        sessions, every source change makes a new tag of segflow's multi-GB images, and an image whose
        dependencies changed shares no layer with its predecessor (both at once would need twice the disk).
        """
        wanted = {image.reference for image in images}
        repositories = {reference.rsplit(":", 1)[0] for reference in wanted}
        held = self._images()
        stale = [ref for ref in held if ref.rsplit(":", 1)[0] in repositories and ref not in wanted]
        kept = {digest for ref, digest in held.items() if ref not in stale and not ref.startswith("sha256:")}
        stale += [ref for ref, digest in held.items() if ref.startswith("sha256:") and digest not in kept]
        if stale:
            self.ctr("images", "remove", "--sync", *stale)  # --sync: their layers are gone when it returns
        loaded = [image.reference for image in images if image.reference not in held]
        for image in images:
            if image.reference in loaded:
                self.ctr("images", "import", str(image.archive))
        return loaded

    def _images(self) -> dict[str, str]:
        """Each image reference containerd holds (names, and the CRI's sha256: ids) -> its manifest digest."""
        rows = self.ctr("images", "list").stdout.splitlines()[1:]
        return {row.split()[0]: row.split()[2] for row in rows if row.strip()}

    def describe(self) -> str:
        return (f"1 node ({', '.join(f'{k} {v}' for k, v in self.versions.items())}); "
                f"API at {self.api.url}, pods on {BRIDGE} {POD_CIDR}, Services {SERVICE_CIDR}")

    def wait_ready(self, kind: str, name: str, namespace: str, timeout: float = 300) -> None:
        """`kubectl rollout status`, with the pods' state and events in the failure message."""
        result = self.kubectl("-n", namespace, "rollout", "status", f"{kind}/{name}", f"--timeout={int(timeout)}s",
                              check=False, timeout=timeout + 30)
        if result.returncode != 0:
            raise AssertionError(f"{kind}/{name} in {namespace} did not become ready: {result.stderr}\n"
                                 f"{self.diagnose(namespace)}")

    def diagnose(self, namespace: str) -> str:
        """Pods, their containers' states and logs, and recent events: what a failed wait needs to say."""
        pods = self.kubectl("-n", namespace, "get", "pods", "-o", "wide", check=False).stdout
        described = self.kubectl("-n", namespace, "describe", "pods", check=False).stdout
        logs = [self.kubectl("-n", namespace, "logs", pod, "--all-containers", "--prefix", "--tail=30",
                             check=False).stdout
                for pod in self.kubectl("-n", namespace, "get", "pods", "-o", "name", check=False).stdout.split()]
        return f"{pods}\n{described[-5000:]}\n" + "".join(logs)[-5000:]


def unavailable() -> str | None:
    """None when this machine can run the node, else what is missing and the command that installs it."""
    if os.geteuid() != 0:
        return "a Kubernetes node needs root (network namespaces, mounts, cgroups, iptables)"
    missing = [tool for tool in ("containerd", "ctr", "runc", "iptables", "ip") if shutil.which(tool) is None]
    missing += [f"/usr/lib/cni/{p}" for p in ("bridge", "host-local", "loopback")
                if not Path(f"/usr/lib/cni/{p}").is_file()]
    if missing:
        return (f"missing {', '.join(missing)}: apt-get install -y containerd runc containernetworking-plugins "
                "iptables iproute2")
    if not Path("/proc/sys/net/bridge").is_dir():
        return "bridge netfilter is not loaded (modprobe br_netfilter): Services would not reach pods on the bridge"
    return None


@contextlib.contextmanager
def node(folder: Path, infra, images_dir: Path) -> Iterator[Node]:
    """The node, ready (Node Ready, cluster DNS answering) until exit; NodeUnavailable says why it cannot run here.

    `infra` holds the node's own images (tests/support/node_images.py: the pause sandbox, CoreDNS);
    `images_dir` keeps containerd's content store between sessions, so an image is imported once per machine.
    """
    if reason := unavailable():
        raise NodeUnavailable(reason)
    built = gobuild.kube()
    if not built.ok:
        raise NodeUnavailable(built.error)
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(LOCK), _host_changes(folder):
        ca = CA(folder / "pki")
        kubelet_client = ca.client("apiserver-kubelet", "kube-apiserver-kubelet-client", "system:masters")
        extra = ["--enable-admission-plugins=NodeRestriction",
                 f"--kubelet-client-certificate={kubelet_client.cert}", f"--kubelet-client-key={kubelet_client.key}",
                 f"--kubelet-certificate-authority={ca.cert}", "--kubelet-preferred-address-types=InternalIP"]
        with control_plane(built, folder / "control-plane", ca, NODE_IP, API_PORT, SERVICE_CIDR, extra,
                           authorization="Node,RBAC") as api, \
                _containerd(folder, images_dir, infra.pause) as socket:
            node = Node(api, folder, socket, {"Kubernetes": gobuild.KUBE_VERSION,
                                              "containerd": _version(["containerd", "--version"], 2),
                                              "runc": _version(["runc", "--version"], 2)})
            node.load_images([infra.pause, infra.coredns])
            with _components(built, folder, ca, api, socket) as processes:
                try:
                    _wait_node_ready(node, processes)
                    _cluster_dns(node, infra.coredns.reference)
                    yield node
                finally:
                    _delete_every_pod(node)


@contextlib.contextmanager
def _exclusive(path: Path, timeout: float = 1800) -> Iterator[None]:
    """Hold PATH's lock: another session's node would share this machine's bridge, iptables and kube-proxy."""
    with open(path, "w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NodeUnavailable(f"another test session's node held {path} for {timeout:.0f} s") from None
                time.sleep(2)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


@dataclass
class _Host:
    """What the node changes on the machine, recorded before so that teardown can put it back and check."""

    sysctls: dict[str, str]
    iptables: dict[str, list[str]]


@contextlib.contextmanager
def _host_changes(folder: Path) -> Iterator[None]:
    """The bridge, the Service route and the sysctls for the node's lifetime; then everything put back and checked.

    Runs after every component stopped: what is still there then was left behind, is removed, and fails the session.
    """
    _remove_stale_node()
    host = _Host({name: _sysctl(name) for name in SYSCTLS}, _iptables_rules())
    try:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{NODE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        _run(["ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
        for name in SYSCTLS[:3]:
            _set_sysctl(name, "1")
        _make_cgroup_root()
        yield
    finally:
        leftovers = _kill_leftover_processes(folder) + _unmount_below(folder) + _remove_pod_interfaces()
        leftovers += _remove_node_rules(host.iptables)
        _run(["ip", "link", "delete", BRIDGE], check=False)  # its address and the Service route go with it
        for name, value in host.sysctls.items():
            _set_sysctl(name, value)
        leftovers += _remove_cgroups()
        if leftovers:
            raise AssertionError("the node left these behind (removed now): " + "; ".join(leftovers))


def _remove_stale_node() -> None:
    """A session killed before its teardown leaves its bridge and rules: take them away before starting anew."""
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        print(f"[node] removing what a previous session left: {BRIDGE}, KUBE-/CNI- iptables chains, cgroups")
        _remove_pod_interfaces()
        _run(["ip", "link", "delete", BRIDGE], check=False)
        _remove_node_rules(None)
        _remove_cgroups()


@contextlib.contextmanager
def _containerd(folder: Path, images_dir: Path, pause_image) -> Iterator[Path]:
    """containerd with the CRI plugin: runc on cgroupfs, the node's CNI network, the local pause image."""
    state = folder / "containerd"
    (state / "cni").mkdir(parents=True, exist_ok=True)
    (state / "cni" / "10-segflow.conflist").write_text(json.dumps(_cni_config(state / "ipam"), indent=2))
    socket = state / "containerd.sock"
    config = state / "config.toml"
    config.write_text(_containerd_config(images_dir, state, socket, pause_image.reference))
    with logged_process(["containerd", "--config", str(config)], dict(os.environ), folder / "containerd.log",
                        stop_timeout=30) as process:
        _wait_socket(socket, process, folder / "containerd.log")
        _forget_old_containers(socket)
        yield socket


def _containerd_config(root: Path, state: Path, socket: Path, sandbox_image: str) -> str:
    # restrict_oom_score_adj: runc cannot give the sandbox the -998 the kubelet asks for without
    # CAP_SYS_RESOURCE ("can't get final child's PID from pipe: EOF"); it is clamped to ours instead.
    return f"""version = 2
root = "{root}"
state = "{state / 'state'}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc')}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{state / 'cni'}"
"""


def _cni_config(ipam_dir: Path) -> dict:
    """One bridge for every pod; hairpin so a pod reaches itself through its Service; masquerade off the node.

    No portmap plugin: no pod here uses a hostPort, and its chains would be shared with podman's.
    """
    return {"cniVersion": "1.0.0", "name": CNI_NETWORK, "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(ipam_dir), "routes": [{"dst": "0.0.0.0/0"}],
                  "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]]}},
    ]}


def _forget_old_containers(socket: Path) -> None:
    """Containers a killed session left in the kept content store's metadata (their tasks died with it)."""
    ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
    for container in _run([*ctr, "containers", "list", "--quiet"]).stdout.split():
        _run([*ctr, "containers", "delete", container], check=False)


@contextlib.contextmanager
def _components(built, folder: Path, ca: CA, api: KubeAPI, socket: Path) -> Iterator[dict[str, subprocess.Popen]]:
    """kube-controller-manager, kube-scheduler, kubelet and kube-proxy, each with its own identity, until exit."""
    def kubeconfig(stem: str, user: str, group: str | None = None) -> Path:
        return write_kubeconfig(folder / f"{stem}.kubeconfig", api.url, ca.cert,
                                ca.client(f"{stem}-client", user, group))

    binaries = built.binaries
    controller = [str(binaries["kube-controller-manager"]),
                  f"--kubeconfig={kubeconfig('controller-manager', 'system:kube-controller-manager')}",
                  "--use-service-account-credentials=true", f"--root-ca-file={ca.cert}",
                  f"--service-account-private-key-file={folder / 'pki' / 'sa.key'}",
                  f"--service-cluster-ip-range={SERVICE_CIDR}", "--leader-elect=false",
                  "--bind-address=127.0.0.1", "--secure-port=0", "--v=1"]
    scheduler = [str(binaries["kube-scheduler"]),
                 f"--kubeconfig={kubeconfig('scheduler', 'system:kube-scheduler')}", "--leader-elect=false",
                 "--bind-address=127.0.0.1", "--secure-port=0", "--v=1"]
    kubelet = [str(binaries["kubelet"]), f"--config={_kubelet_config(folder, ca, socket)}",
               f"--kubeconfig={kubeconfig('kubelet', f'system:node:{NODE_NAME}', 'system:nodes')}",
               f"--root-dir={folder / 'kubelet'}", f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
               # cAdvisor's own containerd client (not the runtime endpoint): without it the kubelet's
               # /metrics/cadvisor has no namespace, pod or container labels
               f"--containerd={socket}", "--v=1"]
    proxy_healthz = free_port()
    proxy = [str(binaries["kube-proxy"]),
             f"--config={_proxy_config(folder, kubeconfig('proxy', 'system:kube-proxy'), proxy_healthz)}", "--v=1"]
    env = {**os.environ, "GOMAXPROCS": "2"}
    with contextlib.ExitStack() as stack:
        stack.callback(_reset, binaries["kube-proxy"], folder / "kubelet")  # last out: after all four stopped
        processes = {name: stack.enter_context(logged_process(command, env, folder / f"{name}.log", stop_timeout=30))
                     for name, command in (("kube-controller-manager", controller), ("kube-scheduler", scheduler),
                                           ("kubelet", kubelet), ("kube-proxy", proxy))}
        _wait_healthy(f"http://127.0.0.1:{proxy_healthz}/healthz", processes, folder)
        yield processes


def _reset(kube_proxy: Path, kubelet_root: Path) -> None:
    """What `kubeadm reset` does after the components stop: none of them undoes these itself.

    kube-proxy's rules go with `kube-proxy --cleanup`; the kubelet leaves its KUBE-FIREWALL and
    canary chains, and its root folder bind-mounted onto itself (made shared for mount propagation).
    """
    subprocess.run([str(kube_proxy), "--cleanup", "--v=0"], capture_output=True, timeout=60)
    for table in IPTABLES_TABLES:
        saved = _run(["iptables-save", "-t", table]).stdout.splitlines()
        chains = {line.split()[0][1:] for line in saved if line.startswith((":KUBE-FIREWALL", ":KUBE-KUBELET-CANARY"))}
        for rule in saved:
            if rule.startswith("-A ") and any(f"-j {chain}" in rule for chain in chains):
                _run(["iptables", "-t", table, "-D", *shlex.split(rule)[1:]], check=False)
        for action in ("-F", "-X"):
            for chain in sorted(chains):
                _run(["iptables", "-t", table, action, chain], check=False)
    _unmount_below(kubelet_root.parent, only=kubelet_root)


def _kubelet_config(folder: Path, ca: CA, socket: Path) -> Path:
    serving = ca.server("kubelet", NODE_NAME, [NODE_NAME, NODE_IP])
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # this machine: cgroup v1 (cgroupfs, no systemd as PID 1), swap allowed, no CAP_SYS_RESOURCE
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False, "cgroupRoot": f"/{CGROUP_ROOT}",
        "containerRuntimeEndpoint": f"unix://{socket}",
        "address": NODE_IP, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 0,
        "tlsCertFile": str(serving.cert), "tlsPrivateKeyFile": str(serving.key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca.cert)}},
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local", "clusterDNS": [DNS_IP], "resolvConf": "/etc/resolv.conf",
        # a test machine's disk may be mostly full: evict on nothing short of exhaustion, never collect images
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False, "maxPods": 60, "syncFrequency": "10s",
        "staticPodPath": "", "rotateCertificates": False, "serverTLSBootstrap": False,
        "podLogsDir": str(folder / "pod-logs"),
    }
    path = folder / "kubelet.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _proxy_config(folder: Path, kubeconfig: Path, healthz_port: int) -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "iptables", "clusterCIDR": POD_CIDR, "hostnameOverride": NODE_NAME,
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "bindAddress": NODE_IP, "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{free_port()}",
        "nodePortAddresses": [POD_CIDR],
        # leave the machine's conntrack table sizes and route_localnet as they are
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False},
    }
    path = folder / "kube-proxy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _wait_healthy(url: str, processes: dict[str, subprocess.Popen], folder: Path, timeout: float = 120) -> None:
    """kube-proxy's healthz answers 200 once its first sync wrote the Services' rules."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(processes, folder)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s: {_tail(folder / 'kube-proxy.log')}")


def _check_alive(processes: dict[str, subprocess.Popen], folder: Path) -> None:
    for name, process in processes.items():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {_tail(folder / f'{name}.log')}")


def _wait_node_ready(node: Node, processes: dict[str, subprocess.Popen], timeout: float = 240) -> None:
    deadline, status = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        _check_alive(processes, node.folder)
        status = node.kubectl("get", "node", NODE_NAME, "-o",
                              "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}", check=False).stdout
        if status == "True":
            return
        time.sleep(1)
    logs = "\n".join(f"--- {name}\n{_tail(node.folder / f'{name}.log')}"
                     for name in ("kubelet", "containerd", "kube-controller-manager"))
    raise RuntimeError(f"node {NODE_NAME} not Ready after {timeout:.0f} s (Ready={status or 'unknown'}):\n{logs}")


def _cluster_dns(node: Node, image: str, timeout: float = 180) -> None:
    """CoreDNS as the cluster's DNS (Service kube-dns at DNS_IP), as kubeadm installs it; ready when it answers.

    CoreDNS listens on 1053 in its pod and the Service maps 53 to it, so it runs without privileges
    (no NET_BIND_SERVICE); names outside the cluster go to the machine's resolver.
    """
    labels = {"k8s-app": "kube-dns"}
    corefile = """.:1053 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"""
    meta = {"name": "coredns", "namespace": "kube-system"}
    container = {
        "name": "coredns", "image": image, "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"name": "dns", "containerPort": 1053, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "170Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    node.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", **meta}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": corefile}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {**meta, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": "coredns", "dnsPolicy": "Default",
                                        "priorityClassName": "system-cluster-critical",
                                        "containers": [container],
                                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": DNS_IP, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
                            {"name": "metrics", "port": 9153, "targetPort": 9153, "protocol": "TCP"}]}},
    ])
    node.wait_ready("deployment", "coredns", "kube-system", timeout)


def _delete_every_pod(node: Node, timeout: float = 120) -> None:
    """Pods go through the kubelet, which stops their containers and has CNI give back their addresses."""
    for kind in ("deployments", "statefulsets", "daemonsets", "replicasets", "jobs"):
        node.kubectl("delete", kind, "--all", "--all-namespaces", "--wait=false", check=False)
    node.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=5", "--wait=false", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = node.kubectl("get", "pods", "--all-namespaces", "-o", "name", check=False).stdout.split()
        sandboxes = [line for line in node.ctr("tasks", "list", check=False).stdout.splitlines()[1:] if line]
        if not pods and not sandboxes:
            return
        time.sleep(1)


def _kill_leftover_processes(folder: Path) -> list[str]:
    """Container shims the runtime left (a shim outlives containerd by design), or a component that did not stop."""
    left, ours = [], _ancestors()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"{folder}/" in cmdline and int(proc.name) not in ours:
            left.append(f"process {proc.name} ({cmdline[:80]})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), 9)
    return left


def _ancestors() -> set[int]:
    """This process and those above it: a test command line may name the node's folder too."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _unmount_below(folder: Path, only: Path | None = None) -> list[str]:
    """Mounts under FOLDER (a pod's volumes, a sandbox's network namespace), or ONLY and below it, deepest first."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    below = sorted({m for m in mounts if m.startswith(str(folder) + "/")
                    and (only is None or m == str(only) or m.startswith(f"{only}/"))}, key=len, reverse=True)
    for mount in below:
        subprocess.run(["umount", "--lazy", mount], capture_output=True)
    return [f"mount {m}" for m in below]


def _remove_pod_interfaces() -> list[str]:
    """The host ends of pods' veth pairs still on the bridge: CNI's DEL removes them with each sandbox."""
    left = sorted(path.parent.name for path in Path("/sys/class/net").glob("*/master")
                  if path.resolve().name == BRIDGE)
    for name in left:
        _run(["ip", "link", "delete", name], check=False)
    return [f"interface {name}" for name in left]


def _iptables_rules() -> dict[str, list[str]]:
    """Each table's chains and rules, without packet counters."""
    return {table: [line for line in _run(["iptables-save", "-t", table]).stdout.splitlines()
                    if line.startswith(("-", ":"))] for table in IPTABLES_TABLES}


def _remove_node_rules(before: dict[str, list[str]] | None) -> list[str]:
    """Remove the chains and rules the node added; what there was (kube-proxy's cleanup and CNI's DEL leave none).

    The node's are KUBE-* chains (kube-proxy, kubelet), CNI chains whose rules name its network, and
    rules that jump to them or name its bridge and ranges; with BEFORE, only those added since. Other
    programs' rules (podman's CNI chains, say) are left alone.
    """
    left = []
    for table, now in _iptables_rules().items():
        old = set(before[table]) if before else set()
        rules = [line for line in now if line.startswith("-A ") and line not in old]
        chains = {line.split()[0][1:] for line in now if line.startswith(":") and line not in old}
        ours = {chain for chain in chains if chain.startswith("KUBE-")
                or any(rule.split()[1] == chain and _names_the_node(rule) for rule in rules)}
        added = [rule for rule in rules if _names_the_node(rule) or rule.split()[1] in ours
                 or any(f"-j {chain}" in rule for chain in ours)]
        left += [f"iptables -t {table} {rule}" for rule in added]
        for rule in added:
            if rule.split()[1] not in ours:
                _run(["iptables", "-t", table, "-D", *shlex.split(rule)[1:]], check=False)
        for action in ("-F", "-X"):
            for chain in sorted(ours):
                _run(["iptables", "-t", table, action, chain], check=False)
    return left


def _names_the_node(rule: str) -> bool:
    return any(mark in rule for mark in ("KUBE-", CNI_NETWORK, POD_CIDR, SERVICE_CIDR, BRIDGE))


def _make_cgroup_root() -> None:
    """The kubelet's cgroupRoot in every v1 hierarchy (it must exist); a cpuset takes its parent's CPUs and memory."""
    for hierarchy in _v1_hierarchies():
        root = hierarchy / CGROUP_ROOT
        root.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for name in ("cpuset.cpus", "cpuset.mems"):
                (root / name).write_text((hierarchy / name).read_text())


def _v1_hierarchies() -> list[Path]:
    return [path for path in CGROUPS.iterdir() if path.is_dir() and path.name != "unified"]


def _remove_cgroups() -> list[str]:
    """The kubelet's cgroup tree, in every hierarchy, deepest first (a cgroup goes only once empty); what stays."""
    left = []
    for hierarchy in _v1_hierarchies():
        root = hierarchy / CGROUP_ROOT
        if not root.is_dir():
            continue
        for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()
        try:
            root.rmdir()
        except OSError as exc:
            left.append(f"cgroup {root} ({exc.strerror})")
    return left


def _sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text().strip()


def _set_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name).write_text(value)


def _wait_socket(socket: Path, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"containerd exited with {process.returncode}: {_tail(log)}")
        if socket.is_socket():
            return
        time.sleep(0.2)
    raise TimeoutError(f"containerd did not open {socket} in {timeout:.0f} s: {_tail(log)}")


def _version(command: list[str], field_index: int) -> str:
    return _run(command).stdout.split()[field_index]


def _tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.is_file() else "(no log)"


def _run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")
    return result
