"""The search pipeline runs through kfp.local at tiny size: prep, then either the tune step (a Ray Tune
search whose best trial is published) or the nas step's DARTS search, the retrained architecture and
its report as the step's artifacts."""

import json

import pytest

from segflow.config import load_recipe
from segflow.pipelines.local import artifact, run_locally, summary

pytest.importorskip("pytorch_lightning", reason="NNI's nas API needs pytorch-lightning: "
                    "pip install --no-deps pytorch-lightning==2.6.6")

pytestmark = pytest.mark.slow
TINY = ["data.num_images=32", "data.image_size=[32,32]", "training.epochs=1", "training.batch_size=8",
        "training.num_workers=1", "training.cpus_per_worker=1"]
SPACE = {"cells": 2, "width": 4, "nodes": 1, "ops": ["sep_conv_3x3", "skip_connect"]}


def test_search_pipeline_runs_nas_and_publishes_the_searched_model(tmp_path):
    run = run_locally(load_recipe("quickstart", TINY), tmp_path, pipeline="search",
                      arguments={"method": "nas", "nas_epochs": 1, "nas_space_json": json.dumps(SPACE)})
    assert set(run.tasks) == {"prep", "nas"}
    searched = artifact(run.tasks["nas"], "run")
    document = json.loads((run.tasks["nas"] / "run" / "architecture.json").read_text())
    assert document["space"] == "darts-seg" and document["size"]["width"] == 4
    assert searched["metadata"]["model"] == "darts" and next((run.tasks["nas"] / "run" / "model").glob("*/model.pt"))
    html = (run.tasks["nas"] / "report").read_text()
    assert "Neural architecture search: quickstart" in html and "data:image/png;base64," in html
    rows = summary(run)
    assert rows["architecture"].endswith("architecture.json") and "metric: miou" in rows
    assert "deploy" not in rows


def test_search_pipeline_runs_tune_and_publishes_the_best_trial(tmp_path):
    search = ["search.backend=ray", "search.algo=random", "search.trials=2", "search.max_epochs=1",
              "search.concurrency=1", "model.params={depth: 2, width: 8}"]
    run = run_locally(load_recipe("quickstart", [*TINY, *search]), tmp_path, pipeline="search",
                      arguments={"method": "tune"})
    assert set(run.tasks) == {"prep", "tune"}
    best = artifact(run.tasks["tune"], "run")
    trials = json.loads((run.tasks["tune"] / "run" / "search.json").read_text())["trials"]
    assert len(trials) == 2 and best["metadata"]["best_trial"] in {t["name"] for t in trials}
    overrides = json.loads(json.loads((run.tasks["tune"] / "executor_output.json").read_text())
                           ["parameterValues"]["Output"])
    assert set(overrides) == {"training.lr", "training.batch_size"}
    html = (run.tasks["tune"] / "report").read_text()
    assert "Hyperparameter optimization: quickstart" in html and html.count("data:image/png;base64,i") >= 5
    rows = summary(run)
    assert rows["search"].startswith("ray / random, best trial") and "metric: miou" in rows
