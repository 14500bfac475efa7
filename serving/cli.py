"""`segflow package`, `segflow serve` and `segflow predict`, registered as a CLI plugin.

The core CLI (segflow.cli) never imports the serving layer: this module adds its commands
through the `segflow.commands` entry point, keeping the layers' dependencies pointing one way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segflow.errors import SegflowError

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(package)
    app.command()(serve)
    app.command()(deploy)
    app.command()(predict)


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


def serve(
    source: Annotated[str, typer.Argument(help="archive URI (segflow package), model URI (packaged if needed) "
                                                "or a .mar beside its manifest.json")],
    port: Annotated[int | None, typer.Option(help="inference port on 127.0.0.1 (default: a free port)")] = None,
    management_port: Annotated[int | None, typer.Option(help="management port on 127.0.0.1 (default: a free port)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus metrics port on 127.0.0.1 (default: a free port)")] = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="config, keys, logs, pid file and sockets; default runs/serve/NAME")] = None,
    web: Annotated[bool, typer.Option("--web", help="also serve the web page: drop an image, see its mask")] = False,
    web_port: Annotated[int | None, typer.Option(help="web page port on 127.0.0.1 (default: a free port)")] = None,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", help="largest image the page accepts, MiB")] = 16,
) -> None:
    """Serve a model with TorchServe on 127.0.0.1 until Ctrl-C: token auth on, Prometheus metrics."""
    from segflow.serving.server import Ports

    ports = Ports.pick(port, management_port, metrics_port)
    with running_server(source, run_dir, ports) as (server, endpoints, manifest):
        print_endpoints(endpoints, manifest)
        with web_page(endpoints, web_port, max_upload_mb) if web else nullcontext():
            serve_until_interrupted(server)
    console.print("stopped")


@contextmanager
def web_page(endpoints, port: int | None, max_upload_mb: int) -> Iterator[None]:
    """The web page beside TorchServe while the block runs; its proxy holds the inference key, the browser none."""
    from segflow.serving.server import free_port
    from segflow.serving.webapp import KeyFileToken, WebServer, WebSettings, create_app

    app = create_app(WebSettings(endpoints.predictions, max_upload_mb),
                     KeyFileToken(endpoints.key_file, endpoints.management))
    with WebServer(app, "127.0.0.1", port or free_port()) as page:
        console.print(f"  web page:    {page.url}   (drop an image, see the segmentation)", soft_wrap=True)
        yield


@contextmanager
def running_server(source: str, run_dir: Path | None, ports) -> Iterator[tuple]:
    """(server, endpoints, manifest) of a started TorchServe for `source`; stopped on leaving, Ctrl-C included."""
    import signal
    import tempfile

    from segflow.serving.archive import resolve_archive
    from segflow.serving.server import TorchServe

    with tempfile.TemporaryDirectory(prefix="segflow-serve-") as staging:
        mar, manifest = resolve_archive(source, Path(staging))
        server = TorchServe(mar, manifest["name"], run_dir or Path("runs/serve") / manifest["name"], ports)
        for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job starts with it ignored
            signal.signal(sig, _interrupt)
        try:
            endpoints = server.start()  # stops what it started if interrupted
        except KeyboardInterrupt:
            errors.print("interrupted while TorchServe was starting; stopped")
            raise typer.Exit(130) from None
    try:
        yield server, endpoints, manifest
    finally:
        server.stop()


def serve_until_interrupted(server) -> None:
    """Block until Ctrl-C (or SIGTERM); TorchServe exiting on its own is an error with its log tail."""
    try:
        server.wait()
        raise SegflowError(f"TorchServe stopped on its own; {server.log_tail()}")
    except KeyboardInterrupt:
        console.print("stopping TorchServe ...")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def print_endpoints(endpoints, manifest: dict) -> None:
    console.print(f"[green]serving {endpoints.model}[/green] (archive sha256 {manifest['mar_sha256'][:16]}, "
                  f"model version {manifest['model']['version']}); Ctrl-C stops it", soft_wrap=True)
    console.print(f"  predictions: {endpoints.predictions}", soft_wrap=True)
    console.print(f"  management:  {endpoints.management}", soft_wrap=True)
    console.print(f"  metrics:     {endpoints.metrics}/metrics   (no key needed)", soft_wrap=True)
    console.print(f"  keys:        {endpoints.key_file}   (inference key for predictions and /ping)", soft_wrap=True)
    console.print(f"  logs:        {endpoints.logs}", soft_wrap=True)
    console.print(f"  try: segflow predict IMAGE --endpoint {endpoints.predictions} --key-file {endpoints.key_file}", soft_wrap=True)


def deploy(
    archive: Annotated[str, typer.Argument(help="archive URI (`segflow package` --out); its latest version goes live")],
    management: Annotated[str | None, typer.Option(
        "--management", envvar="SEGFLOW_TORCHSERVE_MANAGEMENT_URL",
        help="TorchServe's management URL, e.g. http://127.0.0.1:8081; without one, print the helm upgrade")] = None,
    token: Annotated[str | None, typer.Option(help="TorchServe's management key",
                                              envvar="SEGFLOW_TORCHSERVE_MANAGEMENT_KEY")] = None,
    key_file: Annotated[Path | None, typer.Option("--key-file", help="TorchServe's key_file.json")] = None,
    staging: Annotated[str | None, typer.Option(help="where the .mar is staged for TorchServe to download; "
                                                     "default: deploy/ beside the archive")] = None,
) -> None:
    """Register an archive with a running TorchServe and make it the default version: live without a restart."""
    from segflow.serving.deploy import default_staging_uri, helm_command
    from segflow.serving.deploy import deploy as run_deploy
    from segflow.serving.server import read_keys
    from segflow.store import open_store, read_manifest

    if not management:
        version, _ = read_manifest(open_store(archive))
        console.print(f"no TorchServe management URL given; to serve this archive with the Helm chart run:\n"
                      f"{helm_command(archive, version)}", soft_wrap=True)
        return
    key = token or (read_keys(key_file)["management"] if key_file else None)
    done = run_deploy(archive, management, key, staging or default_staging_uri(archive))
    how = "registered and made the default" if done.registered else "already registered; made the default"
    console.print(f"[green]{done.name} version {done.version}[/green] (archive {done.archive_version}) {how} "
                  f"on {management}; the default was {done.previous or 'none'}", soft_wrap=True)


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
