"""`segflow compress` on tiny synthetic data: pruning (with a fine-tuning run), int8, artifacts that load back.

The original model is an untrained tiny U-Net saved as an artifact (its card names the dataset
and the recipe, as a training run's does), so only the fine-tuning test starts Ray.
"""

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from segflow.cli.main import app
from segflow.compress.compress import compress, parse_method
from segflow.compress.prune import prune
from segflow.compress.quantize import int8_config, quantize
from segflow.config import load_recipe
from segflow.config.recipe import ClassSpec
from segflow.data import open_dataset, prep
from segflow.errors import ConfigError, ModelError
from segflow.evaluate.predict import evaluate_arrays
from segflow.models import ModelConfig, count_parameters, create_model
from segflow.models.artifact import load_model, save_model
from segflow.train.run import model_config_for

pytestmark = pytest.mark.slow
TINY = ["data.num_images=24", "data.image_size=[32,32]", "training.epochs=1", "training.batch_size=8",
        "training.num_workers=1", "training.cpus_per_worker=1", "model.params={depth: 2, width: 8}"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Latency figures and evaluation on one torch thread: on a busy 2-core machine two threads mostly wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A tiny U-Net artifact whose card names its dataset and recipe."""
    root = tmp_path_factory.mktemp("original")
    recipe = load_recipe("quickstart", TINY)
    dataset = open_dataset(prep(recipe, None, str(root / "data"), show_progress=False).uri)
    config = model_config_for(recipe, dataset)
    torch.manual_seed(0)
    card = {"recipe": recipe.model_dump(mode="json"), "dataset": {"uri": dataset.uri, "version": dataset.version}}
    save_model(str(root / "model"), create_model(config), config, card, [])
    return str(root / "model"), dataset


@pytest.fixture(scope="module")
def pruned_int8(original, tmp_path_factory):
    """`compress --method prune:0.5+int8 --epochs 0` of the original: (outcome, its OUT folder)."""
    out = tmp_path_factory.mktemp("pruned-int8")
    return compress(original[0], "prune:0.5+int8", str(out), epochs=0, show_progress=False), out


def test_prune_then_int8_writes_an_artifact_that_loads_back_and_scores_the_same(original, pruned_int8):
    (model_uri, dataset), (result, out) = original, pruned_int8
    base, pruned, int8 = result.figures
    assert pruned.parameters < base.parameters / 3 and int8.size_bytes < pruned.size_bytes
    assert pruned.gflops < base.gflops / 2 and int8.gflops == pytest.approx(pruned.gflops)

    model, config, card = load_model(result.model_uri)  # weights_only state dict, rebuilt from model.json
    assert config.name == "int8" and config.params["base"]["name"] == "pruned"
    images, targets = dataset.arrays(card["metrics"]["split"])
    again = evaluate_arrays(model, config, images, targets, "val")
    assert again.metrics["miou"] == pytest.approx(card["metrics"]["miou"])
    assert card["compressed_from"].startswith(model_uri) and card["compression"] == "prune:0.5+int8"
    report = (out / "compression.md").read_text()
    assert "| original |" in report and "| prune:0.5+int8 |" in report and "int8 |" in report


def test_pruned_model_fine_tunes_with_the_training_loop(original, tmp_path):
    model_uri, _ = original
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["compress", model_uri, "--method", "prune:0.25", "--out", str(out),
                                      "--epochs", "1", "--set", "training.batch_size=4"])
    assert result.exit_code == 0, result.output
    assert "prune:0.25" in result.output and "compression report" in result.output
    tuned = json.loads(next((out / "finetune" / "model").glob("*/manifest.json")).read_text())
    assert tuned["training"]["epochs_run"] == 1 and tuned["recipe"]["training"]["batch_size"] == 4
    model, config, card = load_model(str(out / "model"))
    assert config.name == "pruned" and config.params["layers"]["stem.0"] == {"out_channels": 6}
    assert card["metrics"]["miou"] == pytest.approx(tuned["metrics"]["miou"])  # the fine-tuned weights, published
    assert (out / "eval" / "report.md").is_file() and (out / "compression.md").is_file()


@pytest.mark.parametrize(("spec", "message"), [
    ("fp16", "unknown compression method 'fp16'"),
    ("prune:1.5", "ratio 1.5 is out of range"),
    ("prune:0", "ratio 0.0 is out of range"),
    ("prune:half", "'half' .* is not a number"),
    ("int8+prune:0.5", "pruning before int8"),
    ("int8:4", "int8 takes no value"),
])
def test_bad_methods_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_method(spec)


class _Branchy(nn.Module):
    """A forward that branches on tensor values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.conv(x)
        return self.head(x if x.mean() > 0 else -x)


def test_a_model_that_cannot_be_traced_is_refused(original):
    config = load_model(original[0])[1]
    for step in (lambda: prune(_Branchy(), config, 0.5), lambda: quantize(_Branchy(), config, [])):
        with pytest.raises(ModelError, match="cannot be traced with torch.fx.*must not branch on tensor values"):
            step()


def test_an_int8_classifier_saves_and_loads_back(tmp_path):
    """int8 Linear layers keep a dtype and a (weight, bias) tuple in their state dict, not only tensors."""
    classes = [ClassSpec(name=f"c{i}") for i in range(10)]
    config = ModelConfig(name="smallcnn", task="classification", classes=classes, in_channels=1,
                         input_size=(28, 28), mean=[0.5], std=[0.25])
    int8 = quantize(create_model(config), config, [torch.randn(8, 1, 28, 28)])
    card = save_model(str(tmp_path), int8, int8_config(config), {}, [])
    loaded, loaded_config, _ = load_model(str(tmp_path))
    x = torch.randn(4, 1, 28, 28)
    assert loaded_config.name == "int8" and torch.equal(loaded(x), int8(x))
    floats = count_parameters(create_model(config))
    assert 0.9 * floats < card["parameters"] <= floats  # the int8 weights count (BatchNorm folded into them)


def test_an_int8_model_is_not_compressed_again(pruned_int8, tmp_path):
    with pytest.raises(ModelError, match="int8 model already"):
        compress(pruned_int8[0].model_uri, "int8", str(tmp_path), show_progress=False)
