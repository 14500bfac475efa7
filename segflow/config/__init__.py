"""Recipes: typed, validated descriptions of a use case (see `configs/*.yaml`)."""

from segflow.config.loader import (
    list_recipes,
    load_recipe,
    parse_recipe,
    recipe_to_json,
    recipe_to_yaml,
    with_overrides,
)
from segflow.config.recipe import ClassSpec, Recipe

__all__ = ["ClassSpec", "Recipe", "list_recipes", "load_recipe", "parse_recipe", "recipe_to_json", "recipe_to_yaml", "with_overrides"]
