"""`segflow package`: a model artifact becomes a TorchServe .mar, published as a versioned archive.

    ARCHIVE_URI/<version>/NAME.mar       what TorchServe loads (contents below)
    ARCHIVE_URI/<version>/manifest.json  where it came from, its serving settings and its sha256

    NAME.mar: torchserve_entry.py (imports the installed handler), model.pt (state dict),
              model.json (ModelConfig), manifest.json (the model card), palette.json (class
              colours, the legend of the mask PNGs), model_config.yaml (dynamic batching and
              the handler's ServingSection)

The version id is the .mar's sha256 prefix. Serving never trusts a .mar on its own: it
recomputes the sha256 of the copy it is about to load and refuses one that differs from the
manifest (`resolve_archive`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from segflow.config.recipe import ServingSection
from segflow.data.palette import palette
from segflow.errors import ServingError
from segflow.models import ModelConfig
from segflow.models.artifact import CARD, CONFIG, WEIGHTS, load_model_dir
from segflow.serving.codec import CHANNEL_MODES, hex_colour
from segflow.store import (
    download_tree,
    join_uri,
    latest_version,
    open_store,
    publish_version,
    read_manifest,
    sha256_file,
)

ARCHIVE_KIND = "torchserve-archive"
HANDLER_SETTINGS = "segflow"  # the handler's section of model_config.yaml: the recipe's ServingSection
ENTRY = Path(__file__).with_name("torchserve_entry.py")
PALETTE, MODEL_CONFIG = "palette.json", "model_config.yaml"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
RESPONSE_TIMEOUT_S = 120


@dataclass(frozen=True)
class Archive:
    """A published archive version: where it is and its manifest."""

    uri: str
    version: str
    manifest: dict


def default_archive_uri(model_uri: str) -> str:
    """The `archive/` folder beside the model artifact: runs/x/model -> runs/x/archive."""
    stripped = model_uri.rstrip("/")
    if "/" not in stripped.removeprefix("s3://").removeprefix("file://"):
        return "archive"
    return stripped.rsplit("/", 1)[0] + "/archive"


def package(model_uri: str, out_uri: str | None = None, *, name: str | None = None,
            serving: ServingSection | None = None, version: str | None = None) -> Archive:
    """Build NAME.mar from a model artifact version (default: the latest) and publish it under `out_uri`."""
    out_uri = out_uri or default_archive_uri(model_uri)
    with tempfile.TemporaryDirectory(prefix="segflow-package-") as tmp:
        work = Path(tmp)
        model_dir, model_version, card = _download_model(model_uri, version, work / "model")
        model_version = model_version or card.get("version", "1")
        _, config, _ = load_model_dir(model_dir)  # refuse now, not in a worker, weights that do not load
        _check_servable(config)
        name = _model_name(name, card, config)
        serving = serving or ServingSection.model_validate((card.get("recipe") or {}).get("serving", {}))
        _write_extras(model_dir, config, serving)
        mar = _archive(model_dir, name, model_version, work / "export")
        manifest = _manifest(mar, name, model_uri, model_version, card, serving)
        release = work / "release"
        release.mkdir()
        shutil.move(mar, release / mar.name)
        (release / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        archive_version = manifest["mar_sha256"][:16]
        publish_version(open_store(out_uri), release, archive_version)
    return Archive(out_uri, archive_version, manifest)


def _download_model(model_uri: str, version: str | None, dest: Path) -> tuple[Path, str, dict]:
    store = open_store(model_uri)
    version, card = read_manifest(store, version)
    download_tree(store, version, dest)
    missing = [f for f in (WEIGHTS, CONFIG, CARD) if not (dest / f).is_file()]
    if missing:
        raise ServingError(f"{join_uri(model_uri, version)} lacks {', '.join(missing)}; it is not a model "
                           "artifact (give the OUT/model URI of a training run)")
    return dest, version, card


def _check_servable(config: ModelConfig) -> None:
    if config.in_channels not in CHANNEL_MODES:
        raise ServingError(f"the model takes {config.in_channels} input channels; served images are decoded to "
                           f"{', '.join(map(str, CHANNEL_MODES))} channels, so this model cannot be served from images")


def _model_name(name: str | None, card: dict, config: ModelConfig) -> str:
    chosen = name or (card.get("recipe") or {}).get("name") or config.name
    if not NAME.match(chosen):
        raise ServingError(f"model name {chosen!r} is not usable in a URL; use letters, digits, '-' and '_' (--name)")
    return chosen


def _write_extras(model_dir: Path, config: ModelConfig, serving: ServingSection) -> None:
    """palette.json (the legend of mask colours) and model_config.yaml (batching + handler settings)."""
    colours = palette(config.classes)
    legend = [{"index": i, "name": c.name, "colour": hex_colour(colours[i])}
              for i, c in enumerate(config.classes)]
    (model_dir / PALETTE).write_text(json.dumps({"classes": legend}, indent=2))
    model_config = {
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": serving.batch_size,
        "maxBatchDelay": serving.max_batch_delay_ms,
        "responseTimeout": RESPONSE_TIMEOUT_S,
        HANDLER_SETTINGS: serving.model_dump(),
    }
    (model_dir / MODEL_CONFIG).write_text(yaml.safe_dump(model_config, sort_keys=False))


def _archive(model_dir: Path, name: str, model_version: str, export: Path) -> Path:
    export.mkdir(parents=True)
    extras = ",".join(str(model_dir / f) for f in (CONFIG, CARD, PALETTE))
    command = [sys.executable, "-m", "model_archiver.model_packaging", "--model-name", name,
               "--version", model_version, "--handler", str(ENTRY), "--serialized-file", str(model_dir / WEIGHTS),
               "--extra-files", extras, "--config-file", str(model_dir / MODEL_CONFIG), "--export-path", str(export)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        hint = " (install segflow[serve])" if "No module named" in result.stderr else ""
        raise ServingError(f"torch-model-archiver failed{hint}: {result.stderr.strip()[-2000:]}")
    return export / f"{name}.mar"


def _manifest(mar: Path, name: str, model_uri: str, model_version: str, card: dict, serving: ServingSection) -> dict:
    from model_archiver.version import __version__ as archiver_version

    return {
        "kind": ARCHIVE_KIND,
        "name": name,
        "mar": mar.name,
        "mar_sha256": sha256_file(mar),
        "size_bytes": mar.stat().st_size,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"uri": model_uri, "version": model_version, "weights_sha256": card.get("weights_sha256"),
                  "name": card.get("model"), "task": card.get("task")},
        "serving": serving.model_dump(),
        "handler": "segflow.serving.handler",
        "torch_model_archiver": archiver_version,
        "model_card": card,
    }


def resolve_archive(source: str, model_store: Path) -> tuple[Path, dict]:
    """A verified NAME.mar in `model_store` from an archive URI, a model URI (packaged first) or a .mar path."""
    if source.endswith(".mar"):
        return _local_mar(Path(source), model_store)
    store = open_store(source)
    version, manifest = read_manifest(store)
    if manifest.get("kind") != ARCHIVE_KIND:
        if "weights_sha256" not in manifest:
            raise ServingError(f"{source} is neither a model nor an archive artifact (its manifest has no "
                               f"kind {ARCHIVE_KIND!r} and no weights_sha256); give OUT/model or OUT/archive")
        archive = _archive_for_model(source, manifest)
        store, version, manifest = open_store(archive.uri), archive.version, archive.manifest
    return _download_verified(store, version, manifest, model_store)


def fetch_archive(uri: str, model_store: Path) -> tuple[Path, dict]:
    """A verified NAME.mar in `model_store` from an archive URI (ARCHIVE_URI for the latest version,
    ARCHIVE_URI/VERSION for one): a read-only download, unlike resolve_archive, which may package a model."""
    store = open_store(uri)
    version, manifest = read_manifest(store)
    if manifest.get("kind") != ARCHIVE_KIND:
        raise ServingError(f"{uri} is not an archive artifact (its manifest has no kind {ARCHIVE_KIND!r}); give the "
                           "--out of `segflow package` (OUT/archive), or OUT/archive/VERSION for one version")
    return _download_verified(store, version, manifest, model_store)


def _download_verified(store, version: str, manifest: dict, model_store: Path) -> tuple[Path, dict]:
    prefix = f"{version}/" if version else ""
    mar = store.get_file(prefix + manifest["mar"], model_store / manifest["mar"])
    verify(mar, manifest, join_uri(store.uri, prefix + manifest["mar"]))
    return mar, manifest


def _archive_for_model(model_uri: str, card: dict) -> Archive:
    """The latest archive beside the model if it packages these very weights, else a new one."""
    uri = default_archive_uri(model_uri)
    store = open_store(uri)
    if latest_version(store):
        version, manifest = read_manifest(store)
        if manifest.get("model", {}).get("weights_sha256") == card["weights_sha256"]:
            return Archive(uri, version, manifest)
    return package(model_uri, uri)


def _local_mar(path: Path, model_store: Path) -> tuple[Path, dict]:
    manifest_path = path.parent / "manifest.json"
    if not path.is_file():
        raise ServingError(f"{path} does not exist")
    if not manifest_path.is_file():
        raise ServingError(f"{path} has no manifest.json beside it to check its sha256 against; "
                           "serve the archive artifact that `segflow package` wrote instead")
    manifest = json.loads(manifest_path.read_text())
    mar = model_store / path.name
    shutil.copyfile(path, mar)
    verify(mar, manifest, str(path))
    return mar, manifest


def verify(mar: Path, manifest: dict, source: str) -> None:
    """Refuse (and delete) a .mar whose sha256 is not the one its manifest recorded."""
    actual = sha256_file(mar)
    if actual != manifest.get("mar_sha256"):
        mar.unlink(missing_ok=True)
        raise ServingError(f"{source} has sha256 {actual}, but its manifest recorded {manifest.get('mar_sha256')}: "
                           "the archive was changed after packaging; refusing to serve it (package the model again)")
