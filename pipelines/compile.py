"""Compile the pipelines to KFP v2 IR YAML, committed beside their source.

The committed YAML is what users upload in the Kubeflow UI; a test recompiles and fails when
it is stale. The default recipe is the quickstart, so a run started from the UI with no
parameters changed works.
"""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from segflow.config import load_recipe, recipe_to_json

PIPELINES = Path(__file__).resolve().parent


def pipelines() -> dict:
    from segflow.pipelines.search import search
    from segflow.pipelines.train_and_serve import train_and_serve

    return {"train_and_serve": train_and_serve, "search": search}


def compile_all(out_dir: Path) -> list[Path]:
    defaults = {"recipe_json": recipe_to_json(load_recipe("quickstart"))}
    written = []
    for name, func in pipelines().items():
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(func, str(path), pipeline_parameters=defaults)
        written.append(path)
    return written
