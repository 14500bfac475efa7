"""podman with a configuration and storage of its own, under the image cache; nothing in /etc changes.

The settings are those this kind of machine needs (cgroup v1, no systemd, rlimits capped below
podman's defaults) and are harmless elsewhere: runc with cgroupfs, no default ulimits, events in a
file. Storage (overlay) and temporary files live in the cache, so builds of several GB do not fill
/var/tmp and one `rm -rf` of the cache removes everything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import deque
from pathlib import Path

from imagebuild.errors import ImageBuildError

LOG_TAIL_LINES = 40


def require(*tools: str) -> None:
    """Fail with the apt-get command that installs whichever of `tools` is missing."""
    if missing := [tool for tool in tools if shutil.which(tool) is None]:
        raise ImageBuildError(f"{', '.join(missing)} not found: install with `apt-get install -y {' '.join(missing)}` "
                              "(`make images` does so when run as root)")


def log_tail(log: Path) -> str:
    with log.open(errors="replace") as stream:
        return "".join(deque(stream, maxlen=LOG_TAIL_LINES))


class Podman:
    """Runs podman against the storage in `root` (the image cache's podman/ folder)."""

    def __init__(self, root: Path):
        require("podman", "runc")
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        conf, storage = root / "containers.conf", root / "storage.conf"
        conf.write_text(
            "# Written by tools/imagebuild: podman for a machine with cgroup v1, no systemd and capped rlimits.\n"
            "[containers]\ndefault_ulimits = []\n"
            f'[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\nevents_logger = "file"\n'
            f'events_logfile_path = "{root / "events.log"}"\nimage_copy_tmp_dir = "{root / "tmp"}"\n')
        storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "storage"}"\n'
                           f'runroot = "{root / "run"}"\n')
        self.env = os.environ | {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage),
                                 "TMPDIR": str(root / "tmp")}

    def run(self, *args: str, log: Path | None = None, echo=None) -> str:
        """podman ARGS; its output, or ImageBuildError with the output's tail. With `log`, the output
        goes there and lines for which `echo(line)` is true are printed as they come."""
        if log is None:
            done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True)
            if done.returncode:
                raise ImageBuildError(f"`podman {' '.join(args)}` failed ({done.returncode}):\n"
                                      f"{(done.stdout + done.stderr)[-4000:]}")
            return done.stdout
        log.parent.mkdir(parents=True, exist_ok=True)
        command = ["podman", *args]
        with log.open("w", buffering=1) as out, subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE,
                                                                 stderr=subprocess.STDOUT, text=True,
                                                                 errors="replace") as proc:
            for line in proc.stdout:
                out.write(line)
                if echo and echo(line):
                    print(line.rstrip(), flush=True)
        if proc.returncode:
            raise ImageBuildError(f"`podman {args[0]}` failed ({proc.returncode}); the end of {log}:\n{log_tail(log)}")
        return ""

    def exists(self, reference: str) -> bool:
        return subprocess.run(["podman", "image", "exists", reference], env=self.env).returncode == 0

    def size(self, reference: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", reference).strip())

    def tags(self, repository: str) -> list[str]:
        """Every local name of `repository` (repository:tag)."""
        images = json.loads(self.run("images", "--format", "json", "--filter", f"reference={repository}") or "[]")
        return sorted({name for image in images for name in image.get("Names") or []
                       if name.rpartition(":")[0] == repository})
