"""The `segflow` command line: every user-facing step is a subcommand here.

Commands appear only when they work end to end. Errors raised on purpose (SegflowError) are
printed as one clear message without a traceback and exit with status 1.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from segflow.errors import SegflowError
from segflow.progress import SILENT, TERMINAL

app = typer.Typer(no_args_is_help=True, add_completion=False, help="segflow: segmentation and classification from data to served model.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect prepared datasets.")
app.add_typer(data_app, name="data")
console = Console()
errors = Console(stderr=True, soft_wrap=True)

PROFILE_STEPS = 5
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
    data: Annotated[str | None, typer.Option("--data", help=(
        "dataset root as distributed: a folder, or that folder uploaded to s3://bucket/prefix "
        "(default: the recipe's data.path)"))] = None,
    overrides: SetOption = None,
    force: Annotated[bool, typer.Option(help="prepare again even if the same inputs were already prepared")] = False,
) -> None:
    """Validate a dataset and write it as a versioned artifact (manifest + shards)."""
    from segflow.cli.render import manifest_tables
    from segflow.config import load_recipe
    from segflow.data import prep as run_prep

    config = load_recipe(recipe, overrides)
    result = run_prep(config, data, out, force=force, progress=TERMINAL if sys.stderr.isatty() else SILENT)
    for table in manifest_tables(result.manifest, result.uri, result.version):
        console.print(table)
    state = "reused (same inputs as the latest version)" if result.reused else "written"
    console.print(f"[green]dataset version {result.version} {state}[/green] at {result.uri}")


@app.command()
def train(
    recipe: Annotated[str, typer.Argument(help="recipe name or YAML path")],
    out: Annotated[str | None, typer.Option("--out", help="run URI (folder or s3://...); default runs/RECIPE")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="a prepared dataset URI (segflow prep)")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="raw dataset folder; prepared into OUT/dataset")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray Train workers (DDP ranks); default from the recipe")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs; default from the recipe")] = None,
    profile: Annotated[bool, typer.Option(help="profile a few steps with torch.profiler (OUT/profile)")] = False,
    fresh: Annotated[bool, typer.Option(help="ignore checkpoints of an earlier run in OUT and start over")] = False,
    overrides: SetOption = None,
) -> None:
    """Train with Ray Train (DDP), then evaluate: model, metrics, figures and report in OUT."""
    from segflow.config import load_recipe
    from segflow.train import train as run_train

    shortcuts = {"training.num_workers": workers, "training.epochs": epochs}
    config = load_recipe(recipe, [*(overrides or []), *(f"{k}={v}" for k, v in shortcuts.items() if v is not None)])
    out = out or f"runs/{config.name}"
    try:
        outcome = run_train(config, out, dataset_uri=dataset, data_path=data,
                            profile_steps=PROFILE_STEPS if profile else 0, fresh=fresh)
    except KeyboardInterrupt:
        errors.print(f"interrupted: every finished epoch is checkpointed in {out}/ray; "
                     "run the same command again to resume", highlight=False)
        raise typer.Exit(130) from None
    _print_outcome(outcome)


@app.command()
def distill(
    recipe: Annotated[str, typer.Argument(help="recipe name or YAML path")],
    teacher: Annotated[str, typer.Option("--teacher", help="the teacher's model artifact URI")],
    student: Annotated[str, typer.Option("--student", help="NAME[:key=value,...], e.g. unet:depth=2,width=8")],
    out: Annotated[str | None, typer.Option("--out", help="run URI; default runs/RECIPE-distill")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="a prepared dataset URI")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="raw dataset folder")] = None,
    temperature: Annotated[float, typer.Option(help="softmax temperature of the soft targets")] = 4.0,
    alpha: Annotated[float, typer.Option(help="weight of the distillation term (1-alpha on labels)")] = 0.5,
    overrides: SetOption = None,
) -> None:
    """Train a smaller student against a teacher; report teacher vs student side by side."""
    from segflow.compress import distill as run_distill
    from segflow.config import load_recipe

    config = load_recipe(recipe, overrides)
    result = run_distill(config, teacher, student, out or f"runs/{config.name}-distill", dataset_uri=dataset,
                         data_path=data, temperature=temperature, alpha=alpha)
    _print_outcome(result.student)
    console.print(f"distillation report: {result.report}")


@app.command()
def nas(
    recipe: Annotated[str, typer.Argument(help="recipe name or YAML path")],
    out: Annotated[str | None, typer.Option("--out", help="run URI; default runs/RECIPE-nas")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="a prepared dataset URI")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="raw dataset folder")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="search epochs; default: the recipe's search.max_epochs "
                                                           "(retraining uses training.epochs)")] = None,
    space: Annotated[list[str] | None, typer.Option("--space", help="search-space size, e.g. --space cells=2 "
                                                    "--space width=8 --space nodes=3 --space 'ops=\\[sep_conv_3x3, zero]'")] = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="a model URI to compare with (e.g. the recipe's own model)")] = None,
    overrides: SetOption = None,
) -> None:
    """Search a cell architecture with DARTS (NNI), retrain it from scratch, report it against a baseline."""
    from segflow.compress import nas as run_nas
    from segflow.compress import parse_space
    from segflow.config import load_recipe

    config = load_recipe(recipe, overrides)
    result = run_nas(config, out or f"runs/{config.name}-nas", dataset_uri=dataset, data_path=data,
                     search_epochs=epochs, space_settings=parse_space(space or []), baseline_uri=baseline)
    _print_outcome(result.retrained)
    console.print(f"architecture: {result.architecture_uri}")
    console.print(f"architecture search report: {result.report}")


@app.command()
def compress(
    model: Annotated[str, typer.Argument(help="model artifact URI (OUT/model of a run)")],
    method: Annotated[str, typer.Option("--method", help="int8, prune[:RATIO] (default 0.5) or prune[:RATIO]+int8")],
    out: Annotated[str | None, typer.Option("--out", help="run URI; default runs/compress-METHOD")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="prepared dataset URI; default: the card's")] = None,
    epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs after pruning (0: none); default: "
                                                    "the recipe's")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override a key of the model's recipe for "
                                                        "fine-tuning, e.g. --set training.lr=0.001")] = None,
) -> None:
    """Make a trained model cheaper on CPU (channel pruning, int8); report original vs compressed side by side."""
    from segflow.compress import compress as run_compress

    result = run_compress(model, method, out or f"runs/compress-{method.replace(':', '-').replace('+', '-')}",
                          dataset_uri=dataset, epochs=epochs, overrides=overrides,
                          progress=TERMINAL if sys.stderr.isatty() else SILENT)
    from segflow.compress import table

    console.print(table(result.figures, result.task, result.split), markup=False, highlight=False, soft_wrap=True)
    console.print(f"model:  {result.model_uri} (version {result.model_version})")
    console.print(f"compression report: {result.report}")


@app.command()
def tune(
    recipe: Annotated[str, typer.Argument(help="recipe name or YAML path (its search: section is the space)")],
    backend: Annotated[str | None, typer.Option(help="ray or nni; default from the recipe")] = None,
    algo: Annotated[str | None, typer.Option(help="Ray: random, grid, optuna, hyperopt, bohb, asha, hyperband, pbt; "
                                                  "NNI: tpe, anneal, evolution, smac, hyperband, metis, bohb, gp, dngo")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Ray only: fifo, asha, hyperband or pbt (e.g. --algo optuna "
                                                       "--scheduler asha)")] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="number of trials; default from the recipe")] = None,
    max_epochs: Annotated[int | None, typer.Option(min=1, help="epochs per trial; default from the recipe")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="trials at once; default from the recipe")] = None,
    out: Annotated[str | None, typer.Option("--out", help="run URI; default runs/RECIPE-tune")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="a prepared dataset URI")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="raw dataset folder")] = None,
    overrides: SetOption = None,
) -> None:
    """Search hyperparameters (Ray Tune or NNI), promote the best trial's model, write the report.

    Run the same command again to resume an interrupted Ray Tune search (finished trials are kept).
    """
    from segflow.config import load_recipe
    from segflow.search import tune as search_tune

    shortcuts = {"search.backend": backend, "search.algo": algo, "search.scheduler": scheduler,
                 "search.trials": trials, "search.max_epochs": max_epochs, "search.concurrency": concurrency}
    config = load_recipe(recipe, [*(overrides or []), *(f"{k}={v}" for k, v in shortcuts.items() if v is not None)])
    out = out or f"runs/{config.name}-tune"
    try:
        result = search_tune.tune(config, out, dataset_uri=dataset, data_path=data)
    except KeyboardInterrupt:
        errors.print(f"interrupted; finished trials are kept in {out}/search. Ray Tune searches resume when the "
                     "same command runs again", highlight=False)
        raise typer.Exit(130) from None
    _print_search(result)
    _print_outcome(result.model)
    console.print(f"search report: {result.report_uri}")


def _print_search(result) -> None:
    from rich.table import Table

    table = Table(title=f"{result.backend} / {result.algo}: {len(result.trials)} trials")
    for column in ("trial", *result.best.params, "best metric", "epochs", "status"):
        table.add_column(column)
    for trial in result.trials:
        table.add_row(trial.name, *(str(trial.params.get(n)) for n in result.best.params),
                      f"{trial.best(result.mode):.4f}", str(len(trial.curve)), trial.status,
                      style="bold green" if trial is result.best else None)
    console.print(table)
    console.print(f"best: {result.best.name} {result.best.params} -> {result.best_metric:.4f}")


@app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="model artifact URI (OUT/model of a training run)")],
    dataset: Annotated[str, typer.Option("--dataset", help="prepared dataset URI")],
    out: Annotated[str, typer.Option("--out", help="where metrics.json, figures/ and report.md go")],
    split: Annotated[str, typer.Option(help="split to evaluate: val or test")] = "val",
) -> None:
    """Evaluate a model artifact on a dataset split: metrics.json, figures, report.md."""
    from segflow.evaluate import evaluate_uri
    from segflow.evaluate.metrics import scalars

    result = evaluate_uri(model, dataset, out, split)
    _print_metrics(scalars(result.evaluation.metrics))
    console.print(f"report: {result.report}")


def _print_outcome(outcome) -> None:
    from segflow.evaluate.metrics import scalars

    _print_metrics(scalars(outcome.evaluation.evaluation.metrics))
    console.print(f"model:  {outcome.model_uri} (version {outcome.model_version})")
    console.print(f"report: {outcome.evaluation.report}")
    console.print(f"wall time: {outcome.wall_time_s:.0f} s")


def _print_metrics(metrics: dict) -> None:
    from rich.table import Table

    table = Table(title="evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)



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


def _plugins() -> None:
    """Commands of the pipelines and serving layers, registered through entry points."""
    for entry in entry_points(group="segflow.commands"):
        entry.load()(app)


def main() -> None:
    _plugins()
    try:
        app()
    except SegflowError as exc:
        errors.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
