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
    from segflow.train.run import train as run_train

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
    from segflow.compress.distill import distill as run_distill
    from segflow.config import load_recipe

    config = load_recipe(recipe, overrides)
    result = run_distill(config, teacher, student, out or f"runs/{config.name}-distill", dataset_uri=dataset,
                         data_path=data, temperature=temperature, alpha=alpha)
    _print_outcome(result.student)
    console.print(f"distillation report: {result.report}")


@app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="model artifact URI (OUT/model of a training run)")],
    dataset: Annotated[str, typer.Option("--dataset", help="prepared dataset URI")],
    out: Annotated[str, typer.Option("--out", help="where metrics.json, figures/ and report.md go")],
    split: Annotated[str, typer.Option(help="split to evaluate: val or test")] = "val",
) -> None:
    """Evaluate a model artifact on a dataset split: metrics.json, figures, report.md."""
    from segflow.evaluate import evaluate_uri
    from segflow.train.metrics import scalars

    result = evaluate_uri(model, dataset, out, split)
    _print_metrics(scalars(result.evaluation.metrics))
    console.print(f"report: {result.report}")


def _print_outcome(outcome) -> None:
    from segflow.train.metrics import scalars

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



@app.command()
def package(
    model: Annotated[str, typer.Argument(help="model artifact URI (OUT/model of a training run)")],
    out: Annotated[str | None, typer.Option("--out", help="archive artifact URI; default: archive/ beside the model")] = None,
    name: Annotated[str | None, typer.Option(help="model name in the URLs; default: the recipe's name")] = None,
    version: Annotated[str | None, typer.Option(help="model version to package (default: the latest)")] = None,
) -> None:
    """Build a TorchServe archive (.mar) from a model artifact and publish it with its sha256."""
    from segflow.serving.archive import package as build_archive

    archive = build_archive(model, out, name=name, version=version)
    console.print(f"[green]archive {archive.version}[/green] at {archive.uri}")
    console.print(f"{archive.manifest['mar']}: sha256 {archive.manifest['mar_sha256']}, "
                  f"{archive.manifest['size_bytes']:,} bytes", soft_wrap=True)


@app.command()
def serve(
    source: Annotated[str, typer.Argument(help="archive URI (segflow package), model URI (packaged first) or a .mar beside its manifest.json")],
    port: Annotated[int | None, typer.Option(help="inference port on 127.0.0.1 (default: a free port)")] = None,
    management_port: Annotated[int | None, typer.Option(help="management port on 127.0.0.1 (default: a free port)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus metrics port on 127.0.0.1 (default: a free port)")] = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="config, keys, logs, pid file and sockets; default runs/serve/NAME")] = None,
) -> None:
    """Serve a model with TorchServe on 127.0.0.1 until Ctrl-C: token auth on, Prometheus metrics."""
    import signal
    import tempfile

    from segflow.serving.archive import resolve_archive
    from segflow.serving.server import Ports, TorchServe

    with tempfile.TemporaryDirectory(prefix="segflow-serve-") as staging:
        mar, manifest = resolve_archive(source, Path(staging))
        server = TorchServe(mar, manifest["name"], run_dir or Path("runs/serve") / manifest["name"],
                            Ports.pick(port, management_port, metrics_port))
        for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job starts with it ignored
            signal.signal(sig, _interrupt)
        endpoints = server.start()
    _print_endpoints(endpoints, manifest)
    try:
        server.wait()
        raise SegflowError(f"TorchServe stopped on its own; {server.log_tail()}")
    except KeyboardInterrupt:
        console.print("stopping TorchServe ...")
    finally:
        server.stop()
    console.print("stopped")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_endpoints(endpoints, manifest: dict) -> None:
    console.print(f"[green]serving {endpoints.model}[/green] (archive sha256 {manifest['mar_sha256'][:16]}, "
                  f"model version {manifest['model']['version']}); Ctrl-C stops it", soft_wrap=True)
    console.print(f"  predictions: {endpoints.predictions}", soft_wrap=True)
    console.print(f"  management:  {endpoints.management}", soft_wrap=True)
    console.print(f"  metrics:     {endpoints.metrics}/metrics   (no key needed)", soft_wrap=True)
    console.print(f"  keys:        {endpoints.key_file}   (inference key for predictions and /ping)", soft_wrap=True)
    console.print(f"  logs:        {endpoints.logs}", soft_wrap=True)
    console.print(f"  try: segflow predict IMAGE --endpoint {endpoints.predictions} --key-file {endpoints.key_file}", soft_wrap=True)


@app.command()
def predict(
    image: Annotated[Path, typer.Argument(help="a PNG, JPEG, WebP or TIFF image")],
    endpoint: Annotated[str, typer.Option("--endpoint", help="prediction URL printed by `segflow serve`")],
    output_format: Annotated[str | None, typer.Option("--format", help="mask, json, overlay, cutout or topk; default: the server's")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="answer file; default: JSON to stdout, images to IMAGE.FORMAT.png here")] = None,
    rle: Annotated[bool, typer.Option(help="with --format json: add COCO RLE per class")] = False,
    token: Annotated[str | None, typer.Option(help="inference key (env SEGFLOW_TOKEN)", envvar="SEGFLOW_TOKEN")] = None,
    key_file: Annotated[Path | None, typer.Option("--key-file", help="TorchServe key_file.json (in the serve run directory)")] = None,
) -> None:
    """Send an image to a served model and save or print the answer."""
    from segflow.serving.client import InferenceClient, token_from

    if not image.is_file():
        raise SegflowError(f"image {image} does not exist")
    with InferenceClient(endpoint, token_from(token, key_file)) as client:
        answer = client.predict(image.read_bytes(), output_format, rle)
    if out is None and answer.content_type.startswith("application/json"):
        console.print_json(answer.body.decode())
        return
    target = out or Path(f"{image.stem}.{output_format or 'prediction'}.png")
    target.write_bytes(answer.body)
    console.print(f"{answer.content_type or 'answer'} written to {target}")


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
