"""Find, parse and validate recipes, turning pydantic's errors into messages a user can act on.

A recipe is named (`aerial`, looked up in the packaged `configs/`) or given as a path to a
YAML file. `--set key.path=value` overrides are applied before validation, so they are
checked exactly like the file.
"""

from __future__ import annotations

import difflib
import importlib.resources
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from segflow.config.recipe import Recipe
from segflow.errors import ConfigError


def list_recipes() -> dict[str, str]:
    """Names of the packaged recipes mapped to their one-line descriptions."""
    folder = importlib.resources.files("segflow.configs")
    recipes = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            raw = yaml.safe_load(entry.read_text()) or {}
            recipes[entry.name.removesuffix(".yaml")] = str(raw.get("description", "")).strip()
    return recipes


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a packaged recipe by name or a YAML file by path, apply overrides, validate."""
    source, raw = _read(name_or_path)
    for override in overrides or []:
        _apply_override(raw, override)
    return parse_recipe(raw, source)


def parse_recipe(raw: dict[str, Any], source: str = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def with_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """A copy of `recipe` with dotted keys set (e.g. a search trial's {"training.lr": 0.01}), re-validated."""
    raw = recipe.model_dump(mode="json")
    for key, value in overrides.items():
        _set(raw, key, value, f"{key}={value!r}")
    return parse_recipe(raw, f"recipe {recipe.name!r} with overrides")


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def recipe_to_json(recipe: Recipe) -> str:
    """One line of JSON: how a recipe travels as a pipeline parameter (KFP's IR header breaks on newlines)."""
    return recipe.model_dump_json()


def _read(name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    path = Path(name_or_path)
    if str(name_or_path).startswith("s3://"):  # a recipe stored with a run (cluster jobs)
        from segflow.store import open_store

        parent, _, key = str(name_or_path).rpartition("/")
        text, source = open_store(parent).get_text(key), str(name_or_path)
    elif path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist; give a YAML file or one of: "
                              f"{', '.join(list_recipes())}")
        text, source = path.read_text(), str(path)
    else:
        entry = importlib.resources.files("segflow.configs") / f"{name_or_path}.yaml"
        if not entry.is_file():
            names = list(list_recipes())
            hint = difflib.get_close_matches(str(name_or_path), names, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"unknown recipe {str(name_or_path)!r}{did_you_mean}; packaged recipes: "
                f"{', '.join(names)}; or give the path to a YAML file"
            )
        text, source = entry.read_text(), f"configs/{name_or_path}.yaml"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must hold a mapping with keys name, data, model, ...")
    return source, raw


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override; the value is parsed as YAML (numbers, lists, ...)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like key.path=value, e.g. training.epochs=3")
    _set(raw, key.strip(), yaml.safe_load(value), override)


def _set(raw: dict[str, Any], key: str, value: Any, what: str) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {what}: {part!r} holds a value, not a section")
        node = child
    node[parts[-1]] = value


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: the dotted key path, what is wrong, and what is allowed there."""
    lines = [f"{source}: {exc.error_count()} problem(s) in the recipe"]
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        where = ".".join(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            hint = difflib.get_close_matches(loc[-1], allowed, n=1)
            message = f"unknown key {loc[-1]!r}"
            if hint:
                message += f" (did you mean {hint[0]!r}?)"
            if allowed:
                message += f"; allowed keys here: {', '.join(allowed)}"
        elif error["type"] == "missing":
            message = "is required but missing"
        else:
            message = error["msg"]
            if "input" in error and not isinstance(error["input"], dict | list):
                message += f" (got {error['input']!r})"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def _allowed_keys(loc: list[str]) -> list[str]:
    """Field names of the model found by walking `loc` from Recipe; [] where it cannot tell.

    pydantic puts the tag of a discriminated union into the location (`data.aerial.xyz`), so a
    location part that names a union member's tag selects that member.
    """
    candidates: list[Any] = [Recipe]
    for part in loc:
        next_candidates: list[Any] = []
        for annotation in candidates:
            for model in _models_in(annotation):
                if part in model.model_fields:
                    next_candidates.append(model.model_fields[part].annotation)
                elif _tag_of(model) == part:
                    next_candidates.append(model)
            for inner in _containers_in(annotation):
                next_candidates.append(inner)
        candidates = next_candidates
    fields: list[str] = []
    for annotation in candidates:
        for model in _models_in(annotation):
            fields.extend(f for f in model.model_fields if f not in fields)
    return fields


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _containers_in(annotation: Any) -> list[Any]:
    """Element types of list[...] / dict[str, ...] so list indexes and dict keys can be walked."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _containers_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [c for arg in typing.get_args(annotation) for c in _containers_in(arg)]
    if origin is list:
        return [typing.get_args(annotation)[0]]
    if origin is dict:
        return [typing.get_args(annotation)[1]]
    return []


def _tag_of(model: type[BaseModel]) -> str | None:
    for name in ("format", "kind", "type"):
        field = model.model_fields.get(name)
        if field is not None:
            args = typing.get_args(field.annotation)
            if len(args) == 1 and isinstance(args[0], str):
                return args[0]
    return None
