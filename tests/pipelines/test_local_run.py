"""`segflow run` executes the whole train_and_serve pipeline through kfp.local, for real."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TINY = ["data.num_images=48", "data.image_size=[32,32]", "training.epochs=1", "training.batch_size=8",
        "model.params={depth: 2, width: 8}"]


def test_segflow_run_quickstart_produces_model_metrics_report(tmp_path):
    args = [str(Path(sys.executable).parent / "segflow"), "run", "quickstart", "--run-dir", str(tmp_path),
            *[a for t in TINY for a in ("--set", t)]]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pipeline finished" in result.stdout and "metric: miou" in result.stdout
    (run,) = (tmp_path / "pipeline").iterdir()
    model = next((run / "train" / "run" / "model").glob("*/model.pt"))
    assert model.stat().st_size > 0
    assert (run / "train" / "run" / "eval" / "report.md").read_text().startswith("# quickstart")
    html = (run / "train" / "report").read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html
    assert (run / "evaluate" / "report").is_file()
    assert "TorchServe archive" in result.stdout
    mar = next((run / "package" / "archive").glob("*/quickstart.mar"))
    assert mar.stat().st_size > 0
