"""Where initial weights come from: nothing, a torchvision weights name, or a state dict.

torchvision weights are downloaded into TORCH_HOME on first use. Offline (every machine in
CI, many clusters) that download fails deep inside torch.hub; this module checks first and
says which file to place where. State dicts load with `weights_only=True`: no pickled code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.error import URLError

import torch
from torchvision.models import get_weight

from segflow.errors import ModelError


def torchvision_weights(name: str):
    """The torchvision Weights enum for `name` (e.g. "VGG16_Weights.IMAGENET1K_V1"), file at hand."""
    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise ModelError(
            f"{name!r} is not a torchvision weights name; use e.g. 'VGG16_Weights.IMAGENET1K_V1', "
            "a state-dict path/URI, or leave model.weights empty"
        ) from None
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(target), progress=False)
        except (URLError, OSError, RuntimeError) as exc:
            raise ModelError(
                f"cannot download the {name} weights ({exc.__class__.__name__}: {exc}); on a machine "
                f"without internet, place {target.name} (from {weights.url}) at {target} "
                "(set TORCH_HOME to move that folder)"
            ) from None
    return weights


def is_torchvision_name(spec: str) -> bool:
    return "_Weights." in spec and "/" not in spec


def load_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """A state dict from a local path or a store URI, refusing pickled objects."""
    from segflow.store import open_store

    path = Path(uri)
    if "://" in uri and not uri.startswith("file://"):
        parent, _, key = uri.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            return _torch_load(open_store(parent).get_file(key, Path(tmp) / key), uri)
    if not path.is_file():
        raise ModelError(f"weights file {uri} does not exist; give a state-dict path, s3:// URI or torchvision name")
    return _torch_load(path, uri)


def _torch_load(path: Path, uri: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise ModelError(f"{uri} is not a plain state dict loadable with weights_only=True ({exc})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{uri} holds a {type(state).__name__}, not a state dict")
    return state
