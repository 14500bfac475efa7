"""The `segflow` command line: every user-facing step is a subcommand here.

Commands appear only when they work end to end. Errors raised on purpose (SegflowError) are
printed as one clear message without a traceback and exit with status 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from segflow.errors import SegflowError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="segflow: segmentation and classification from data to served model.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect prepared datasets.")
app.add_typer(data_app, name="data")
console = Console()
errors = Console(stderr=True)

SetOption = Annotated[list[str] | None, typer.Option("--set", help="override a recipe key, e.g. --set training.epochs=3")]


@app.callback()
def _global(
    s3_endpoint: Annotated[str | None, typer.Option(help="S3/MinIO endpoint for s3:// URIs (env SEGFLOW_S3_ENDPOINT)")] = None,
) -> None:
    if s3_endpoint:
        os.environ["SEGFLOW_S3_ENDPOINT"] = s3_endpoint


@app.command()
def recipes() -> None:
    """List the packaged recipes."""
    from segflow.cli.render import recipes_table
    from segflow.config import list_recipes

    console.print(recipes_table(list_recipes()))


@app.command()
def prep(
    recipe: Annotated[str, typer.Argument(help="recipe name (see `segflow recipes`) or YAML path")],
    out: Annotated[str, typer.Option("--out", help="dataset artifact URI: a folder or s3://bucket/prefix")],
    data: Annotated[Path | None, typer.Option("--data", help="dataset root as downloaded (default: the recipe's data.path)")] = None,
    overrides: SetOption = None,
    force: Annotated[bool, typer.Option(help="prepare again even if the same inputs were already prepared")] = False,
) -> None:
    """Validate a dataset and write it as a versioned artifact (manifest + shards)."""
    from segflow.cli.render import manifest_tables
    from segflow.config import load_recipe
    from segflow.data import prep as run_prep

    config = load_recipe(recipe, overrides)
    result = run_prep(config, data, out, force=force, show_progress=sys.stderr.isatty())
    for table in manifest_tables(result.manifest, result.uri, result.version):
        console.print(table)
    state = "reused (same inputs as the latest version)" if result.reused else "written"
    console.print(f"[green]dataset version {result.version} {state}[/green] at {result.uri}")


@data_app.command("inspect")
def data_inspect(
    uri: Annotated[str, typer.Argument(help="dataset artifact URI (folder or s3://...)")],
    version: Annotated[str | None, typer.Option(help="a version id (default: the latest)")] = None,
) -> None:
    """Show a prepared dataset: counts per split and class fractions."""
    from segflow.cli.render import manifest_tables
    from segflow.data import open_dataset

    dataset = open_dataset(uri, version)
    for table in manifest_tables(dataset.manifest, dataset.uri, dataset.version):
        console.print(table)


@data_app.command("versions")
def data_versions(uri: Annotated[str, typer.Argument(help="dataset artifact URI")]) -> None:
    """List the versions of a dataset artifact, oldest first."""
    from segflow.cli.render import versions_table
    from segflow.store import list_versions, open_store

    console.print(versions_table(uri, list_versions(open_store(uri))))


def main() -> None:
    try:
        app()
    except SegflowError as exc:
        errors.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
