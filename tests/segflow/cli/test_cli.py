"""The `segflow` command as a user runs it: a real subprocess, real exit codes and output."""

import os
import subprocess
import sys
from pathlib import Path

SEGFLOW = str(Path(sys.executable).parent / "segflow")


def segflow(*args, cwd=None, env=None):
    return subprocess.run([SEGFLOW, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=300)


def test_recipes_lists_every_use_case():
    result = segflow("recipes")
    assert result.returncode == 0, result.stderr
    for name in ("quickstart", "aerial", "carvana", "kitti-road", "coco", "fashion"):
        assert name in result.stdout


def test_prep_then_inspect_then_versions(tmp_path):
    out = tmp_path / "ds"
    first = segflow("prep", "quickstart", "--out", str(out), "--set", "data.num_images=16")
    assert first.returncode == 0, first.stderr
    assert "written" in first.stdout and "train" in first.stdout
    second = segflow("prep", "quickstart", "--out", str(out), "--set", "data.num_images=16")
    assert "reused" in second.stdout
    inspect = segflow("data", "inspect", str(out))
    assert inspect.returncode == 0, inspect.stderr
    assert "class pixel fractions" in inspect.stdout and "background" in inspect.stdout
    assert segflow("data", "versions", str(out)).stdout.count("yes") == 1


def test_errors_are_one_clear_line_with_nonzero_exit(tmp_path):
    typo = segflow("prep", "quickstart", "--out", str(tmp_path), "--set", "training.epoch=2")
    assert typo.returncode == 1
    assert "unknown key 'epoch' (did you mean 'epochs'?)" in typo.stderr
    assert "Traceback" not in typo.stderr
    missing = segflow("prep", "aerial", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 1 and "nowhere" in missing.stderr and "does not exist" in missing.stderr
    assert not (tmp_path / "o").exists()
    nothing = segflow("data", "inspect", str(tmp_path / "empty"))
    assert nothing.returncode == 1 and "holds no artifact" in nothing.stderr
