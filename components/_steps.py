"""Plain functions behind the components: what each step does, testable without KFP.

Component bodies are shipped to the cluster as source code, so they stay a few lines that
import from here (installed in the segflow image) and move artifacts in and out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segflow.config import with_overrides
from segflow.config.recipe import Recipe
from segflow.evaluate.report import to_html
from segflow.store import download_tree, open_store
from segflow.train.metrics import QUALITY, scalars


def train_run(recipe: Recipe, overrides: dict[str, Any], dataset, run, cluster: bool) -> dict:
    """Train `recipe` (with overrides) on the Dataset artifact into the Model artifact `run`.

    Locally the artifacts are folders; in cluster mode the RayJob reads and writes their
    object-store URIs, and the evaluation is copied back so the step can publish it.
    """
    recipe = with_overrides(recipe, overrides) if overrides else recipe
    if cluster:
        from segflow.components.rayjob import to_s3, train_on_cluster

        result = train_on_cluster(recipe, dataset.uri, run.uri)
        download_tree(open_store(to_s3(run.uri)), "eval", Path(run.path) / "eval")
        return result
    from segflow.train.run import train

    outcome = train(recipe, run.path, dataset_uri=dataset.path, show_progress=False)
    return {"model_uri": outcome.model_uri, "version": outcome.model_version}


def publish_evaluation(eval_dir: Path, metrics, report) -> float:
    """Log an evaluation's scalars to a KFP Metrics artifact, write the HTML report, return quality."""
    values = json.loads((eval_dir / "metrics.json").read_text())
    for key, value in scalars(values).items():
        metrics.log_metric(key, value)
    Path(report.path).write_text(to_html((eval_dir / "report.md").read_text(), eval_dir / "figures"))
    task = "segmentation" if "miou" in values else "classification"
    return float(values[QUALITY[task]])
