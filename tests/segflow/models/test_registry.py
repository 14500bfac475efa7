"""Model registry: every architecture builds and gives logits of the right shape; bad names,
foreign weights and offline downloads fail with the fix."""

import typing

import pytest
import torch

from segflow.config.recipe import MODELS, ClassSpec, ModelName
from segflow.errors import ModelError
from segflow.models import ModelConfig, create_model, probabilities
from segflow.models.artifact import load_model, save_model


def config(name, task="segmentation", classes=3, channels=3, size=(64, 64), **params):
    return ModelConfig(name=name, task=task, classes=[ClassSpec(name=f"c{i}") for i in range(classes)],
                       in_channels=channels, input_size=size, params=params, mean=[0.5] * channels,
                       std=[0.25] * channels)


def test_recipe_names_match_the_registry():
    compressed = {"pruned", "int8"}  # written by `segflow compress` from a trained model, never named in a recipe
    assert set(typing.get_args(ModelName)) == set(MODELS) - compressed


@pytest.mark.parametrize("name,params", [
    ("unet", {"depth": 2, "width": 8}),
    ("unet", {"depth": 3, "width": 4, "upsampling": "bilinear"}),
    ("fcn_vgg16", {"fc_width": 32}),
    ("deeplabv3_resnet50", {}),
    ("lraspp_mobilenet_v3_large", {}),
])
def test_segmenters_output_one_logit_map_per_class(name, params):
    model = create_model(config(name, classes=5, channels=4, size=(64, 48), **params)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 64, 48))
    assert out.shape == (2, 5, 64, 48)


def test_unet_handles_odd_sizes():
    model = create_model(config("unet", depth=3, width=4)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 37, 53)).shape == (1, 3, 37, 53)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "vgg16", "smallcnn"])
def test_classifiers_take_one_channel_28px(name):
    model = create_model(config(name, task="classification", classes=10, channels=1, size=(28, 28))).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_name_and_wrong_task():
    with pytest.raises(ModelError, match="unknown model 'unte' \\(did you mean 'unet'\\?\\); known models: unet"):
        create_model(config("unte"))
    with pytest.raises(ModelError, match="'resnet18' is a classification model"):
        create_model(config("resnet18"))
    with pytest.raises(ModelError, match="cannot build 'unet' with params"):
        create_model(config("unet", depth=9))


def test_binary_head_gives_two_class_probabilities():
    cfg = config("unet", classes=2, depth=2, width=4).model_copy(update={"binary": True})
    model = create_model(cfg).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 1, 32, 32)
    probs = probabilities(logits, binary=True)
    assert probs.shape == (1, 2, 32, 32) and torch.allclose(probs.sum(1), torch.ones(1, 32, 32))


def test_state_dict_weights_load_and_foreign_weights_are_refused(tmp_path):
    source = create_model(config("unet", depth=2, width=4))
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    loaded = create_model(config("unet", depth=2, width=4), str(path))
    assert torch.equal(loaded.head.weight, source.head.weight)
    with pytest.raises(ModelError, match="do not fit this model.*another shape"):
        create_model(config("unet", classes=4, depth=2, width=4), str(path))
    with pytest.raises(ModelError, match="do not fit this model.*missing"):
        create_model(config("unet", depth=3, width=4), str(path))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a pickled module, not tensors
    with pytest.raises(ModelError, match="weights_only=True"):
        create_model(config("unet", depth=2, width=4), str(path))
    with pytest.raises(ModelError, match="does not exist"):
        create_model(config("unet", depth=2, width=4), str(tmp_path / "nope.pt"))


def test_offline_torchvision_weights_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    # No internet here (and in CI): the download fails and the message names the file and folder.
    with pytest.raises(ModelError) as err:
        create_model(config("fcn_vgg16", fc_width=8), "VGG16_Weights.IMAGENET1K_V1")
    message = str(err.value)
    assert "vgg16-397923af.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    with pytest.raises(ModelError, match="not a torchvision weights name"):
        create_model(config("fcn_vgg16", fc_width=8), "VGG99_Weights.NOPE")


def test_model_artifact_roundtrip(tmp_path):
    cfg = config("unet", depth=2, width=4)
    model = create_model(cfg).eval()
    card = save_model(str(tmp_path / "model"), model, cfg, {"note": "t"}, [{"epoch": 1}])
    assert card["parameters"] > 0 and card["cpu_latency_ms"]["p50"] > 0 and len(card["version"]) == 16
    loaded, loaded_cfg, loaded_card = load_model(str(tmp_path / "model"))
    assert loaded_cfg == cfg and loaded_card["note"] == "t"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
