"""DARTS end to end at tiny size: search (NNI), export, rebuild as a plain model, retrain, evaluate, report.

One segmentation run through the CLI (synthetic set, with a baseline row) and one classification
run on Fashion-MNIST-shaped IDX files; the bad inputs fail before anything trains.
"""

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("pytorch_lightning", reason="NNI's nas API needs pytorch-lightning: "
                    "pip install --no-deps pytorch-lightning==2.6.6")

from segflow.cli.main import app  # noqa: E402
from segflow.compress.nas_command import model_params, nas, parse_space
from segflow.config import load_recipe
from segflow.data import open_dataset, prep
from segflow.data.formats.fashion import FILES
from segflow.errors import ConfigError, ModelError
from segflow.models import create_model
from segflow.models.artifact import load_model, save_model
from segflow.models.darts import SPACES, SpaceSize
from segflow.progress import SILENT
from segflow.train import model_config_for

pytestmark = pytest.mark.slow
RUN = ["training.epochs=1", "training.batch_size=8", "training.num_workers=1", "training.cpus_per_worker=1"]
TINY = ["data.num_images=40", "data.image_size=[32,32]", *RUN]
SPACE = ["cells=2", "width=8", "nodes=2", "ops=[sep_conv_3x3, dil_conv_3x3, max_pool_3x3, skip_connect, zero]"]


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    """`segflow nas quickstart`: tiny space, 1 search epoch, 1 retraining epoch, an untrained U-Net as baseline."""
    root = tmp_path_factory.mktemp("nas-seg")
    recipe = load_recipe("quickstart", TINY)
    dataset = open_dataset(prep(recipe, None, str(root / "data"), progress=SILENT).uri)
    baseline = str(root / "baseline")
    config = model_config_for(recipe, dataset).model_copy(update={"params": {"depth": 2, "width": 8}})
    save_model(baseline, create_model(config), config, {}, [])
    args = ["nas", "quickstart", "--out", str(root / "run"), "--dataset", dataset.uri, "--epochs", "1",
            "--baseline", baseline, *(a for s in SPACE for a in ("--space", s)),
            *(a for s in TINY for a in ("--set", s))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root / "run", result.output


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    root = tmp_path_factory.mktemp("nas-fashion")
    rng = np.random.default_rng(0)
    for part, n in (("train", 60), ("test", 20)):
        images, labels = FILES[part]
        _write_idx(root / images, rng.integers(0, 255, (n, 28, 28)), 2051)
        _write_idx(root / labels, np.arange(n) % 10, 2049)
    recipe = load_recipe("fashion", [f"data.path={root}", *RUN])
    return nas(recipe, str(root / "run"), search_epochs=1, space_settings={"cells": 2, "width": 8, "nodes": 2},
               progress=SILENT)


def _write_idx(path, array, magic):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_nas_searches_exports_retrains_and_reports(segmentation):
    run, output = segmentation
    document = json.loads((run / "architecture.json").read_text())
    assert document["space"] == "darts-seg" and document["space_version"] == 1
    size = SpaceSize.from_params(document["size"])
    assert set(document["architecture"]) == set(SPACES["darts-seg"].choices(size))
    assert "search epoch 1" in output and "architecture search report" in output
    report = (run / "neural-arch-search.md").read_text()
    assert "| unet {'depth': 2, 'width': 8} | baseline |" in report
    assert "| darts (darts-seg, cells=2, width=8, nodes=2) | searched |" in report and "x fewer" in report
    assert "| encoder | 0 | in0: " in report and "| decoder | 1 |" in report
    for figure in ("samples", "loss", "precision_recall"):
        assert f"eval/figures/{figure}.png" in report and (run / "eval" / "figures" / f"{figure}.png").is_file()
    card = json.loads(next((run / "model").glob("*/manifest.json")).read_text())
    assert card["architecture"]["space"] == "darts-seg" and "miou" in card["metrics"]


def test_the_retrained_model_is_plain_torch_and_runs_channels_last(segmentation):
    run, _ = segmentation
    model, config, _ = load_model(str(run / "model"))  # weights_only=True state dict
    assert config.name == "darts" and not any("nni" in type(m).__module__ for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model.to(memory_format=torch.contiguous_format)(x)
        fast = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert plain.shape == (2, 4, 32, 32) and torch.allclose(plain, fast, atol=1e-4)
    document = json.loads((run / "architecture.json").read_text())
    rebuilt = create_model(config.model_copy(update={"params": model_params(document)}))
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_classification_space_on_fashion_mnist_files(classification):
    assert classification.architecture["space"] == "darts-cls"
    assert classification.retrained.evaluation.evaluation.split == "test"
    figures = classification.figures[-1]
    assert figures.role == "searched" and 0 <= figures.quality <= 1
    with open(classification.report) as report:
        assert "accuracy (test)" in report.read()
    model, config, _ = load_model(classification.retrained.model_uri)
    assert config.task == "classification" and model(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_an_exported_architecture_from_another_space_is_refused(segmentation, classification):
    run, _ = segmentation
    seg_document = json.loads((run / "architecture.json").read_text())
    seg_config = load_model(str(run / "model"))[1]
    with pytest.raises(ModelError, match="'darts-cls' builds classification models but the data is a segmentation"):
        create_model(seg_config.model_copy(update={"params": model_params(classification.architecture)}))
    foreign = model_params(seg_document) | {"architecture": classification.architecture["architecture"]}
    with pytest.raises(ModelError, match="does not fit space 'darts-seg' v1 .*unexpected.*'normal_node0_edge0'"):
        create_model(seg_config.model_copy(update={"params": foreign}))
    with pytest.raises(ModelError, match="lacks \\['architecture'\\]"):
        model_params({key: value for key, value in seg_document.items() if key != "architecture"})


def test_a_space_with_no_candidate_ops_is_refused_before_anything_runs(tmp_path):
    recipe = load_recipe("quickstart", TINY)
    with pytest.raises(ConfigError, match=r"no candidate ops \(ops=\[\]\); give at least one of: sep_conv_3x3"):
        nas(recipe, str(tmp_path), space_settings={"ops": []}, progress=SILENT)
    with pytest.raises(ConfigError, match="has nothing to choose"):
        nas(recipe, str(tmp_path), space_settings={"ops": ["skip_connect"], "nodes": 1}, progress=SILENT)
    with pytest.raises(ConfigError, match="unknown search-space setting.*'depth'.*known: cells, width, nodes, ops"):
        nas(recipe, str(tmp_path), space_settings={"depth": 2}, progress=SILENT)
    with pytest.raises(ConfigError, match="--space 'cells' is not key=value"):
        parse_space(["cells"])
    assert not any(tmp_path.iterdir())
