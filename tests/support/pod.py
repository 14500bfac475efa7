"""Run a rendered pod's containers as local processes, the way a kubelet would start them.

No container runtime exists here, but what a chart's correctness rests on inside a pod can be
reproduced with Linux primitives, so the chart's own specs run as rendered:

- each container gets a private mount namespace whose root filesystem is read-only
  (readOnlyRootFilesystem), with the pod's volumes (emptyDir, ConfigMap, Secret) at their
  mountPaths, readOnly where the spec says, ConfigMap keys mounted with subPath as single files;
- it runs as the securityContext's user and group, with no_new_privs and no capabilities
  (allowPrivilegeEscalation: false, drop ALL), after the kubelet's runAsNonRoot check;
- its env is the spec's, secretKeyRef and configMapKeyRef resolved from the rendered objects;
- `hosts` entries stand in for cluster DNS (a Service name -> 127.0.0.1) through /etc/hosts.

The image is this machine's filesystem with the venv's tools first on PATH (and the venv's base
interpreter made reachable to the container's user where it sits in a private folder); the containers share
the host network, as a pod's containers share the pod's. Needs root (mount namespaces, setpriv).
A mountPath that does not exist here is created on a tmpfs laid over its nearest existing parent,
which must not be a system folder.
"""

from __future__ import annotations

import base64
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from segflow.serving.server import _group_alive, _signal_group

SYSTEM_FOLDERS = {"/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/var", "/home", "/root", "/proc", "/sys",
                  "/dev", "/tmp"}
PATH = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PodError(RuntimeError):
    """The pod spec asks for something a kubelet would refuse, or this runner cannot reproduce."""


def namespaces_available() -> str | None:
    """None when private mount namespaces work here, else why not (for a skip message)."""
    if os.geteuid() != 0:
        return "running a pod's containers needs root (mount namespaces, setpriv); these tests run as root in CI"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare --mount failed here: {probe.stderr.strip()}"


@dataclass
class Pod:
    """One pod spec with its volumes on disk under `root`; containers start from it by name."""

    spec: dict
    objects: list[dict]  # the rendered ConfigMaps and Secrets (and any the test supplies)
    root: Path
    hosts: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.volume_dirs = {v["name"]: self._make_volume(v) for v in self.spec.get("volumes", [])}
        hosts = "127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in self.hosts.items())
        (self.root / "hosts").write_text(hosts)
        os.chmod(self.root / "hosts", 0o644)

    def container(self, name: str) -> dict:
        for container in self.spec.get("initContainers", []) + self.spec["containers"]:
            if container["name"] == name:
                return container
        raise PodError(f"no container {name!r} in the pod spec")

    def start(self, name: str, log: Path, command: list[str] | None = None,
              env: dict | None = None) -> subprocess.Popen:
        """Start a container (or, with `command`, an exec in its context, e.g. a preStop hook)."""
        script = self._script(self.container(name), command, env or {})
        with open(log, "ab") as out:
            os.chmod(log, 0o666)  # a runtime's log pipe can be reopened by the container's user (/dev/stderr)
            process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self.processes.append(process)
        return process

    def run(self, name: str, log: Path, timeout: float, command: list[str] | None = None) -> int:
        """Run a container (an init container, a hook) to its end; its exit status."""
        process = self.start(name, log, command)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise

    def stop(self) -> None:
        """SIGTERM every process group this pod started, SIGKILL what is left after 20 s."""
        for process in self.processes:
            _kill_group(process)
        self.processes.clear()

    def _make_volume(self, volume: dict) -> Path:
        path = self.root / "volumes" / volume["name"]
        path.mkdir(parents=True)
        if "emptyDir" in volume:
            os.chmod(path, 0o777)  # a kubelet's emptyDir is world-writable
        elif "configMap" in volume:
            self._write_items(path, self._object("ConfigMap", volume["configMap"]["name"])["data"], volume["configMap"])
        elif "secret" in volume:
            data = self._object("Secret", volume["secret"]["secretName"])["data"]
            self._write_items(path, {k: base64.b64decode(v).decode() for k, v in data.items()}, volume["secret"])
        else:
            raise PodError(f"volume {volume['name']!r}: only emptyDir, configMap and secret volumes run here")
        os.chmod(path, 0o755 if "emptyDir" not in volume else 0o777)
        return path

    @staticmethod
    def _write_items(path: Path, data: dict, source: dict) -> None:
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                raise PodError(f"key {item['key']!r} is not in {source.get('name') or source.get('secretName')}")
            target = path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
            os.chmod(target, 0o644)

    def _object(self, kind: str, name: str) -> dict:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise PodError(f"the pod needs {kind} {name!r}, which neither the chart nor the test provides")

    def _env(self, container: dict, extra: dict) -> dict[str, str]:
        env = {"PATH": PATH, "HOSTNAME": self.spec.get("hostname", "segflow-pod"), "LANG": "C.UTF-8"}
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = str(entry["value"])
                continue
            ref = entry["valueFrom"]
            if "secretKeyRef" in ref:
                data = self._object("Secret", ref["secretKeyRef"]["name"])["data"]
                env[entry["name"]] = base64.b64decode(data[ref["secretKeyRef"]["key"]]).decode()
            elif "configMapKeyRef" in ref:
                key = ref["configMapKeyRef"]
                env[entry["name"]] = self._object("ConfigMap", key["name"])["data"][key["key"]]
            else:
                raise PodError(f"env {entry['name']}: only value, secretKeyRef and configMapKeyRef run here")
        return {**env, **extra}

    def _user(self, container: dict) -> tuple[int, int, int | None]:
        pod, own = self.spec.get("securityContext", {}), container.get("securityContext", {})
        uid = own.get("runAsUser", pod.get("runAsUser"))
        gid = own.get("runAsGroup", pod.get("runAsGroup", uid))
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")) and not uid:
            raise PodError(f"container {container['name']}: runAsNonRoot with no non-zero runAsUser; "
                           "a kubelet checks the image's user, which this runner cannot: give runAsUser")
        if uid is None:
            raise PodError(f"container {container['name']} would run as root")
        return uid, gid, pod.get("fsGroup")

    def _expose_interpreter(self) -> list[str]:
        """Mounts that let the container's user run the venv's Python where it lives under a private folder.

        Here the interpreter may sit under /root (mode 0700), where an image has it under /usr/local:
        the folder below the private one is bound, read-only, onto a world-readable tmpfs over it.
        Runs first, while the pod's own folder (the staging place) is not yet hidden by a mount.
        """
        path = Path(sys.executable).resolve()
        for private in reversed(path.parents):
            if private != Path("/") and not private.stat().st_mode & 0o001:
                break
        else:
            return []
        exposed = path.parents[len(path.parents) - len(private.parts) - 1]  # the child of `private` on the path
        stage = self.root / "stage"
        stage.mkdir(exist_ok=True)
        q = shlex.quote
        return [f"mount --bind {q(str(exposed))} {q(str(stage))}",
                f"mount -t tmpfs -o mode=0755 segflow-pod {q(str(private))}",
                f"mkdir {q(str(exposed))}",
                f"mount --bind {q(str(stage))} {q(str(exposed))}",
                f"mount -o remount,bind,ro {q(str(exposed))}"]

    def _script(self, container: dict, command: list[str] | None, extra_env: dict) -> str:
        """The shell run inside the new mount namespace: mounts, read-only root, then exec as the user."""
        lines, overlays = self._expose_interpreter(), set()
        mounts = [(m["mountPath"], m) for m in container.get("volumeMounts", [])] + [("/etc/hosts", None)]
        for target, _ in mounts:
            if not os.path.lexists(target) or any(target.startswith(o + "/") for o in overlays):
                overlays.add(_overlay_for(target, overlays))
        for overlay in sorted(overlays):
            lines.append(f"mount -t tmpfs -o mode=0755 segflow-pod {shlex.quote(overlay)}")
        root = str(self.root.resolve())
        # A mount over a folder holding the pod's volume folders (e.g. /tmp) hides them: those go last.
        hides_root = lambda target: root == target or root.startswith(target.rstrip("/") + "/")  # noqa: E731
        for target, mount in sorted(mounts, key=lambda m: (hides_root(m[0]), m[0].count("/"))):
            if mount is None:
                source = self.root / "hosts"
            else:
                source = self.volume_dirs[mount["name"]] / mount.get("subPath", "")
            if any(target.startswith(o + "/") for o in overlays):
                make = "mkdir -p" if source.is_dir() else "touch"
                lines.append(f"mkdir -p {shlex.quote(str(Path(target).parent))} && {make} {shlex.quote(target)}")
            lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
            if mount is None or mount.get("readOnly"):
                lines.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
        security = container.get("securityContext", {})
        if security.get("readOnlyRootFilesystem"):
            lines.append("mount -o remount,bind,ro /")
        uid, gid, fs_group = self._user(container)
        argv = command or (container.get("command", []) + container.get("args", []))
        if not argv:
            raise PodError(f"container {container['name']} has no command: the image's entrypoint cannot run here")
        lines.append(f"cd {shlex.quote(container.get('workingDir', '/'))}")
        privileges = ["--no-new-privs"] if security.get("allowPrivilegeEscalation") is False else []
        if "ALL" in security.get("capabilities", {}).get("drop", []):
            privileges += ["--inh-caps=-all", "--bounding-set=-all"]
        groups = f"--groups={fs_group}" if fs_group is not None else "--clear-groups"
        env = [f"{k}={v}" for k, v in self._env(container, extra_env).items()]
        lines.append(shlex.join(["exec", "setpriv", f"--reuid={uid}", f"--regid={gid}", groups, *privileges,
                                 "--", "env", "-i", *env, *argv]))
        return "\n".join(lines)


def _overlay_for(target: str, overlays: set[str]) -> str:
    parent = str(Path(target).parent)
    while not os.path.isdir(parent):
        parent = str(Path(parent).parent)
    for overlay in overlays:
        if parent == overlay or parent.startswith(overlay + "/"):
            return overlay
    if parent in SYSTEM_FOLDERS:
        raise PodError(f"mountPath {target} does not exist here and its parent {parent} is a system folder; "
                       "choose a mountPath under a folder that exists in the image (e.g. /srv)")
    return parent


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the container's process group, SIGKILL what is left after 20 s (as a kubelet's grace period)."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _group_alive(process.pid):
        process.poll()
        time.sleep(0.2)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()
