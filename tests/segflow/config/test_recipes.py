"""Recipes: every packaged recipe validates; typos and bad values are refused with the fix."""

import pytest

from segflow.config import list_recipes, load_recipe, parse_recipe
from segflow.errors import ConfigError

EXPECTED = {"quickstart", "aerial", "carvana", "kitti-road", "coco", "fashion"}


def test_every_use_case_has_a_recipe_that_validates():
    assert EXPECTED <= set(list_recipes())
    for name in list_recipes():
        recipe = load_recipe(name)
        assert recipe.name == name


def test_task_follows_the_data_format():
    assert load_recipe("fashion").task == "classification"
    assert load_recipe("aerial").task == "segmentation"


def minimal(**data):
    return {"name": "t", "data": {"format": "synthetic", **data}, "model": {"name": "unet"}}


def test_unknown_key_names_path_and_allowed_keys():
    raw = minimal()
    raw["training"] = {"epoch": 3}
    with pytest.raises(ConfigError) as err:
        parse_recipe(raw, "my.yaml")
    message = str(err.value)
    assert "my.yaml" in message
    assert "training.epoch: unknown key 'epoch' (did you mean 'epochs'?)" in message
    assert "allowed keys here:" in message and "batch_size" in message


def test_unknown_key_inside_a_format_section_lists_that_formats_keys():
    raw = {"name": "t", "data": {"format": "aerial", "ignore_colors": []}, "model": {"name": "unet"}}
    with pytest.raises(ConfigError) as err:
        parse_recipe(raw)
    assert "did you mean 'ignore_colours'" in str(err.value)
    assert "unknown_colours" in str(err.value)


def test_bad_value_lists_allowed_values():
    raw = minimal()
    raw["training"] = {"optimizer": "adamax"}
    with pytest.raises(ConfigError) as err:
        parse_recipe(raw)
    assert "training.optimizer" in str(err.value)
    assert "'adamw', 'adam' or 'sgd'" in str(err.value)
    assert "'adamax'" in str(err.value)


def test_unknown_format_lists_formats():
    with pytest.raises(ConfigError) as err:
        parse_recipe(minimal(format="aeriel"))
    assert "aerial" in str(err.value) and "synthetic" in str(err.value)


def test_model_must_fit_the_task():
    raw = {"name": "t", "data": {"format": "fashion"}, "model": {"name": "unet"}}
    with pytest.raises(ConfigError, match="not a classification model.*resnet18"):
        parse_recipe(raw)


def test_bad_colour_and_split_are_refused():
    with pytest.raises(ConfigError, match="not a hex colour"):
        parse_recipe({"name": "t", "data": {"format": "aerial", "ignore_colours": ["black"]}, "model": {"name": "unet"}})
    with pytest.raises(ConfigError, match="leaves nothing to train on"):
        parse_recipe(minimal(split={"val_fraction": 0.6, "test_fraction": 0.5}))


def test_loguniform_needs_positive_low():
    raw = minimal()
    raw["search"] = {"space": {"lr": {"type": "loguniform", "low": 0, "high": 1}}}
    with pytest.raises(ConfigError, match="search.space.lr.loguniform: Value error, loguniform needs low > 0"):
        parse_recipe(raw)


def test_overrides_are_validated_like_the_file():
    recipe = load_recipe("quickstart", ["training.epochs=7", "data.split.seed=3"])
    assert recipe.training.epochs == 7 and recipe.data.split.seed == 3
    with pytest.raises(ConfigError, match="training.epochs"):
        load_recipe("quickstart", ["training.epochs=-1"])
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        load_recipe("quickstart", ["training.epochs"])


def test_unknown_recipe_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'aerial'"):
        load_recipe("aerail")
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
