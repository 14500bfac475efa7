"""`python -m segflow.serving.fetch`: the serving pod's init container puts a verified .mar in the model store.

The Helm chart's pods start TorchServe on a model store that this step fills: it downloads the
archive version from S3/MinIO (credentials from the environment, as every segflow store reads
them), checks the .mar's sha256 against the archive's manifest, and refuses an archive whose model
name is not the one the chart's URLs and config use. It only reads: a model URI is refused rather
than packaged, so the pod needs no write access to the bucket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segflow.errors import SegflowError

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def fetch(
    archive: Annotated[str, typer.Argument(help="archive URI (the --out of segflow package), or ARCHIVE_URI/VERSION")],
    model_store: Annotated[Path, typer.Option("--model-store", help="folder TorchServe loads .mar files from")],
    name: Annotated[str | None, typer.Option(help="refuse an archive whose model has another name")] = None,
) -> None:
    """Download an archive's .mar into a model store, checked against its manifest's sha256."""
    from segflow.serving.archive import fetch_archive

    model_store.mkdir(parents=True, exist_ok=True)
    mar, manifest = fetch_archive(archive, model_store)
    if name is not None and manifest["name"] != name:
        mar.unlink()
        raise SegflowError(f"{archive} packages model {manifest['name']!r}, not {name!r}: serve it under its own "
                           f"name (model.name={manifest['name']}) or package it again with --name {name}")
    console.print(f"fetched {mar.name} (model {manifest['name']}, sha256 {manifest['mar_sha256'][:16]} verified) "
                  f"into {model_store}", soft_wrap=True)


def main() -> None:
    try:
        typer.run(fetch)
    except SegflowError as exc:
        errors.print(f"error: {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
