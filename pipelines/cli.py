"""`segflow run` and `segflow pipeline compile|submit`, registered as a CLI plugin.

The core CLI (segflow.cli) never imports kfp: this module adds its commands through the
`segflow.commands` entry point, keeping the layers' dependencies pointing one way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    pipeline_app = typer.Typer(no_args_is_help=True, help="Compile or submit the Kubeflow pipelines.")
    app.add_typer(pipeline_app, name="pipeline")
    app.command("run")(run)
    pipeline_app.command("compile")(compile_pipelines)
    pipeline_app.command("submit")(submit)


def run(
    recipe: Annotated[str, typer.Argument(help="recipe name or YAML path")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="default runs/RECIPE-pipeline")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="raw dataset folder (default: the recipe's)")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key")] = None,
) -> None:
    """Run the train_and_serve pipeline locally (kfp.local + local Ray) and summarise it."""
    from segflow.config import load_recipe
    from segflow.pipelines.local import run_locally, summary

    config = load_recipe(recipe, overrides)
    result = run_locally(config, run_dir or Path("runs") / f"{config.name}-pipeline", data)
    table = Table(title=f"{config.name}: pipeline finished in {result.wall_time_s:.0f} s")
    table.add_column("what")
    table.add_column("value")
    for key, value in summary(result).items():
        table.add_row(key, value)
    console.print(table)


def compile_pipelines(
    out_dir: Annotated[Path | None, typer.Option(help="where the IR YAML files go (default: beside the pipelines)")] = None,
) -> None:
    """Compile every pipeline to KFP v2 IR YAML (what the Kubeflow UI uploads)."""
    from segflow.pipelines.compile import PIPELINES, compile_all

    for path in compile_all(out_dir or PIPELINES):
        console.print(f"wrote {path}")


def submit(
    recipe: Annotated[str, typer.Argument(help="recipe name or YAML path")],
    host: Annotated[str, typer.Option(help="Kubeflow Pipelines endpoint, e.g. http://localhost:8080")],
    experiment: Annotated[str, typer.Option(help="KFP experiment name")] = "segflow",
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key")] = None,
) -> None:
    """Upload and start a train_and_serve run on a Kubeflow Pipelines endpoint (cluster mode)."""
    from segflow.config import load_recipe
    from segflow.pipelines.submit import submit_run

    url = submit_run(load_recipe(recipe, overrides), host, experiment)
    console.print(f"run started: {url}")
