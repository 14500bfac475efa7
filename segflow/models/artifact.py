"""Model artifacts: weights + config + card, versioned in the store, loadable without pickle.

    MODEL_URI/<version>/model.pt       state dict (torch.load(weights_only=True) loads it)
    MODEL_URI/<version>/model.json     ModelConfig: rebuilds the network and its pre-processing
    MODEL_URI/<version>/history.json   per-epoch metrics of the run that produced it
    MODEL_URI/<version>/manifest.json  the model card: data, recipe, metrics, size, latency

The version id is the sha256 of model.pt, so the same weights always get the same id.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from segflow.errors import ModelError
from segflow.models.model_config import ModelConfig
from segflow.models.preprocess import for_inference
from segflow.models.registry import count_parameters, create_model, load_weights
from segflow.store import open_store, publish_version, read_manifest, sha256_file

WEIGHTS, CONFIG, HISTORY, CARD = "model.pt", "model.json", "history.json", "manifest.json"


def cpu_latency_ms(model: nn.Module, config: ModelConfig, runs: int = 20, warmup: int = 3) -> dict[str, float]:
    """p50/p90 latency of one image at the model's input size on this machine's CPU."""
    model = for_inference(model.to("cpu"))
    x = torch.randn(1, config.in_channels, *config.input_size).contiguous(memory_format=torch.channels_last)
    timings = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return {"p50": statistics.median(timings), "p90": timings[int(0.9 * (len(timings) - 1))],
            "threads": torch.get_num_threads(), "runs": runs}


def save_model(uri: str, model: nn.Module, config: ModelConfig, card: dict, history: list[dict]) -> dict:
    """Publish a model version; returns the card with version, parameters, size and CPU latency."""
    with tempfile.TemporaryDirectory(prefix="segflow-model-") as tmp:
        folder = Path(tmp)
        torch.save(model.state_dict(), folder / WEIGHTS)
        (folder / CONFIG).write_text(config.model_dump_json(indent=2))
        (folder / HISTORY).write_text(json.dumps(history, indent=1))
        version = sha256_file(folder / WEIGHTS)[:16]
        card = card | {
            "version": version,
            "model": config.name,
            "task": config.task,
            "classes": [c.model_dump() for c in config.classes],
            "parameters": count_parameters(model),
            "size_bytes": (folder / WEIGHTS).stat().st_size,
            "weights_sha256": sha256_file(folder / WEIGHTS),
            "cpu_latency_ms": cpu_latency_ms(model, config),
            "input_size": list(config.input_size),
        }
        (folder / CARD).write_text(json.dumps(card, indent=2, default=str))
        publish_version(open_store(uri), folder, version)
    return card


def load_model(uri: str, version: str | None = None) -> tuple[nn.Module, ModelConfig, dict]:
    """(model in eval mode, its config, its card) from a model artifact URI."""
    store = open_store(uri)
    version, card = read_manifest(store, version)
    prefix = f"{version}/" if version else ""
    config = ModelConfig.model_validate_json(store.get_text(prefix + CONFIG))
    with tempfile.TemporaryDirectory(prefix="segflow-load-") as tmp:
        path = store.get_file(prefix + WEIGHTS, Path(tmp) / WEIGHTS)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelError(f"{uri}: {WEIGHTS} is not a plain state dict ({exc})") from None
    model = create_model(config)
    load_weights(model, state, uri)
    return for_inference(model), config, card


def load_model_dir(folder: Path) -> tuple[nn.Module, ModelConfig, dict]:
    """(model in eval mode, its config, its card) from a local folder holding the artifact files.

    Serving uses it: TorchServe unpacks a .mar into a folder, with no store around it.
    """
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise ModelError(f"{folder} has no {name}; it is not a model artifact folder "
                             "(package a model with `segflow package`)")
    config = ModelConfig.model_validate_json((folder / CONFIG).read_text())
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{folder / WEIGHTS} is not a plain state dict ({exc})") from None
    card = json.loads((folder / CARD).read_text()) if (folder / CARD).is_file() else {}
    model = create_model(config)
    load_weights(model, state, str(folder / WEIGHTS))
    return for_inference(model), config, card


def load_history(uri: str, version: str | None = None) -> list[dict]:
    store = open_store(uri)
    version, _ = read_manifest(store, version)
    prefix = f"{version}/" if version else ""
    return json.loads(store.get_text(prefix + HISTORY)) if store.exists(prefix + HISTORY) else []
