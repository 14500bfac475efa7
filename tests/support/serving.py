"""Serving test material: a tiny model whose masks hold every class, test images, the bad-input corpus.

The reference mask is computed here, in the test process, from the model and the shared
pre-processing (`image_to_input`), not through segflow.serving, so a served mask that equals it
shows the whole HTTP path changed nothing.

`segflow_serve` starts `segflow serve` as a user runs it, for every test that needs a real
TorchServe (and, with --web, the web page beside it).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from segflow.config.recipe import ClassSpec
from segflow.models import ModelConfig, create_model, probabilities
from segflow.models.artifact import save_model
from segflow.models.preprocess import for_inference, image_to_input
from support.real import unavailable

CLASSES = [ClassSpec(name="background"), ClassSpec(name="square", colour="#FF0000"), ClassSpec(name="disc")]
CLOTHES = ["t-shirt", "trouser", "pullover", "dress"]
MAX_PIXELS = 1_000_000
SEGFLOW = str(Path(sys.executable).parent / "segflow")
START_TIMEOUT_S = 240


@contextmanager
def segflow_serve(arguments: list[str], output: Path, ready: str = "predictions:") -> Iterator[subprocess.Popen]:
    """`segflow serve ARGUMENTS` until it prints `ready`; Ctrl-C (SIGINT) afterwards if it still runs."""
    if shutil.which("java") is None:
        unavailable("TorchServe needs Java 17 (apt-get install -y openjdk-17-jre-headless); none on PATH")
    with open(output, "w") as log:
        process = subprocess.Popen([SEGFLOW, "serve", *arguments], stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "COLUMNS": "200"})
        try:
            _wait_printed(output, process, ready)
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)


def web_form(name: str, data: bytes, output: str) -> tuple[bytes, str]:
    """(body, Content-Type) of the web page's upload: what its form posts to /api/predict."""
    boundary = "segflowwebform"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"output\"\r\n\r\n{output}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _wait_printed(output: Path, process: subprocess.Popen, ready: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while ready not in output.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"segflow serve did not start:\n{output.read_text()[-3000:]}")
        time.sleep(0.5)


def tiny_segmenter(seed: int = 0) -> tuple[torch.nn.Module, ModelConfig]:
    """U-Net depth 2, width 4, BatchNorm statistics calibrated on noise so its masks are not one class."""
    torch.manual_seed(seed)
    config = ModelConfig(name="unet", task="segmentation", classes=CLASSES, in_channels=3, input_size=(64, 64),
                         params={"depth": 2, "width": 4}, mean=[0.5] * 3, std=[0.25] * 3)
    model = create_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, 64, 64))
    return for_inference(model), config


def save_tiny_segmenter(uri: str, serving: dict) -> tuple[torch.nn.Module, ModelConfig, dict]:
    model, config = tiny_segmenter()
    card = save_model(uri, model, config, {"recipe": {"name": "tiny", "serving": serving}}, [])
    return model, config, card


def save_tiny_classifier(uri: str) -> dict:
    """A 4-class greyscale classifier (untrained: its top-k order is arbitrary but its answer well formed)."""
    torch.manual_seed(0)
    config = ModelConfig(name="smallcnn", task="classification", classes=[ClassSpec(name=n) for n in CLOTHES],
                         in_channels=1, input_size=(28, 28), mean=[0.5], std=[0.25])
    return save_model(uri, for_inference(create_model(config)), config, {"recipe": {"name": "clothes"}}, [])


def reference_mask(model: torch.nn.Module, config: ModelConfig, image: np.ndarray) -> np.ndarray:
    height, width = config.input_size
    resized = np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    with torch.inference_mode():
        logits = model(image_to_input(resized, config)).float()
        full = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
    return probabilities(full, config.binary).argmax(dim=1)[0].numpy().astype(np.uint8)


def post_prediction(url: str, token: str, body: bytes, content_type: str = "image/png",
                    timeout: float = 60) -> tuple[int, dict, bytes]:
    """POST `body` to a predictions URL with the bearer token: (status, headers, body), an HTTP error's included."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(image: np.ndarray | Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, fmt, **options)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, with a few bytes of data: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    content_type: str
    status: int
    reason: str | None = None  # the rejected-requests label, for refused inputs


def bad_inputs() -> list[Case]:
    """Requests the server must refuse with a 4xx JSON answer."""
    png, jpeg = encode(noise(40, 50), "PNG"), encode(noise(40, 50), "JPEG")
    return [
        Case("empty", b"", "image/png", 400, "empty"),
        Case("text", b"hello", "text/plain", 415, "wrong_content_type"),
        Case("json", b'{"image": "none"}', "application/json", 415, "wrong_content_type"),
        Case("not_an_image", b"\x00\x01garbage" * 10, "image/png", 415, "not_an_image"),
        Case("gif", encode(noise(8, 8), "GIF"), "image/gif", 415, "not_an_image"),
        Case("truncated_png", png[: len(png) // 2], "image/png", 400, "truncated"),
        Case("truncated_jpeg", jpeg[: len(jpeg) // 2], "image/jpeg", 400, "truncated"),
        Case("corrupt_header", png[:16] + b"\xff" * 40, "image/png", 400, "corrupt"),
        Case("over_max_pixels", encode(np.zeros((1000, 1100), np.uint8), "PNG"), "image/png", 413, "too_many_pixels"),
        Case("decompression_bomb", png_bomb(30_000, 30_000), "image/png", 413, "too_many_pixels"),
        Case("float_tiff", encode(Image.new("F", (8, 8), 1.5), "TIFF"), "image/tiff", 415, "unsupported_mode"),
        Case("multipart_without_image", b'--b\r\nContent-Disposition: form-data; name="output"\r\n\r\njson\r\n--b--\r\n',
             "multipart/form-data; boundary=b", 400, "no_image"),
    ]


def convertible_inputs() -> list[Case]:
    """Inputs in other formats and modes that the server converts and answers with 200."""
    rgb = Image.fromarray(noise(40, 50))
    grey16 = Image.fromarray((np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16))
    return [
        Case("jpeg", encode(rgb, "JPEG"), "image/jpeg", 200),
        Case("webp", encode(rgb, "WEBP"), "image/webp", 200),
        Case("tiff", encode(rgb, "TIFF"), "image/tiff", 200),
        Case("cmyk_jpeg", encode(rgb.convert("CMYK"), "JPEG"), "image/jpeg", 200),
        Case("grey16_png", encode(grey16, "PNG"), "image/png", 200),
        Case("palette_png", encode(rgb.convert("P"), "PNG"), "image/png", 200),
        Case("rgba_png", encode(rgb.convert("RGBA"), "PNG"), "image/png", 200),
        Case("grey_png", encode(rgb.convert("L"), "PNG"), "image/png", 200),
        Case("octet_stream", encode(rgb, "PNG"), "application/octet-stream", 200),
    ]
