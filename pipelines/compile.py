"""Compile the pipelines to KFP v2 IR YAML, committed beside their source.

The committed YAML is what users upload in the Kubeflow UI; a test recompiles and fails when
it is stale. It is compiled with the default ClusterConventions (Kubeflow's MinIO and its Secret,
the segflow image, GPUs); `segflow pipeline compile --s3-endpoint ... --no-gpu` writes others.
The default recipe is the quickstart, so a run started from the UI with no parameters changed works.
"""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from segflow.config import load_recipe, recipe_to_json
from segflow.pipelines.conventions import ClusterConventions
from segflow.pipelines.tasks import ClusterPlacement, LocalPlacement, Placement

PIPELINES = Path(__file__).resolve().parent


def pipelines(placement: Placement | None = None) -> dict:
    """The pipelines by name, their tasks placed by `placement` (default: for kfp.local, no cluster settings)."""
    from segflow.pipelines import search, train_and_serve

    placement = placement or LocalPlacement()
    return {"train_and_serve": train_and_serve.build(placement), "search": search.build(placement)}


def compile_pipeline(name: str, path: Path, conventions: ClusterConventions) -> Path:
    """One pipeline's IR YAML for a cluster with `conventions`, the quickstart recipe as its default."""
    defaults = {"recipe_json": recipe_to_json(load_recipe("quickstart"))}
    compiler.Compiler().compile(pipelines(ClusterPlacement(conventions))[name], str(path), pipeline_parameters=defaults)
    return path


def compile_all(out_dir: Path, conventions: ClusterConventions | None = None) -> list[Path]:
    conventions = conventions or ClusterConventions()
    out_dir.mkdir(parents=True, exist_ok=True)  # `--out-dir my-pipelines`, as docs/deploy.md runs it
    return [compile_pipeline(name, out_dir / f"{name}.yaml", conventions) for name in pipelines()]
