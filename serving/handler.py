"""The TorchServe handler: one dynamic batch of HTTP requests in, one answer per request out.

Every request in a batch is decoded and checked on its own. A bad one gets its own 4xx JSON
answer, set for its index with `context.set_response_status`, while the others are predicted
together; letting an exception escape would make TorchServe answer 503 to the whole batch.
Only a fault of the server itself (the model failing on a valid input) still gives a 5xx.

What a request may choose, first match wins:
- the image: the raw body, or a multipart field named data, file or image (any other field
  holding bytes will do);
- `output`, `rle`, `top_k`: a request parameter (a multipart field, or the query string on
  `/NAME/predict?output=json` and `/invocations?model_name=NAME&output=json`; TorchServe 0.12
  drops the query string of `/predictions/NAME`), else a header `X-Segflow-Output`,
  `X-Segflow-Rle`, `X-Segflow-Top-K`; the output also follows `Accept: application/json` or
  `Accept: image/png`; else the archive's default.
Segmentation outputs: mask (palette PNG of class indices), json, overlay, cutout (RGBA PNG).
Classification output: topk (json is the same).

Every answer names the model version it came from in `X-Segflow-Model-Version`; an image
answer (mask, overlay, cutout) also carries its legend in `X-Segflow-Classes`: a JSON list of
the classes present with their colour and pixel fraction, so one request is enough to draw it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

import numpy as np
import torch

from segflow.config.recipe import ServingSection
from segflow.serving.archive import HANDLER_SETTINGS
from segflow.serving.codec import (
    RejectedInput,
    cutout_png,
    decode_image,
    legend,
    mask_png,
    mask_summary,
    overlay_png,
    top_k,
)
from segflow.serving.predictor import Predictor
from segflow.serving.telemetry import ModelMetrics

SEGMENTATION_OUTPUTS = ("mask", "json", "overlay", "cutout")
IMAGE_OUTPUTS = ("mask", "overlay", "cutout")
IMAGE_FIELDS = ("body", "data", "file", "image")
OPTIONS = ("output", "rle", "top_k")
NOT_IMAGES = (*OPTIONS, "model_name")  # model_name: the /invocations query parameter
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
JSON, PNG = "application/json", "image/png"
VERSION_HEADER, CLASSES_HEADER = "X-Segflow-Model-Version", "X-Segflow-Classes"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One accepted request: the decoded image, its model input and the answer it asked for."""

    image: np.ndarray
    tensor: torch.Tensor
    output: str
    rle: bool
    k: int


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class SegflowHandler:
    """initialize(context) once per worker; handle(data, context) once per dynamic batch."""

    def initialize(self, context) -> None:
        self.predictor = Predictor.from_dir(Path(context.system_properties["model_dir"]))
        self.serving = ServingSection.model_validate((context.model_yaml_config or {}).get(HANDLER_SETTINGS, {}))
        self.segmentation = self.predictor.config.task == "segmentation"
        self.metrics = ModelMetrics(context.metrics, context.model_name)
        self.version = str(((context.manifest or {}).get("model") or {}).get("modelVersion", ""))
        self._warm_up()
        log.info("segflow handler ready: %s %s, input %s, %d torch threads, %s", self.predictor.config.name,
                 self.predictor.config.task, self.predictor.config.input_size, torch.get_num_threads(),
                 self.serving.model_dump())

    def _warm_up(self) -> None:
        """One silent round trip, so the first client does not pay for lazy imports and kernel selection."""
        config = self.predictor.config
        blank = np.zeros((*config.input_size, config.in_channels), dtype=np.uint8)
        image = decode_image(cutout_png(blank, blank[:, :, 0]), self.serving.max_pixels, config.in_channels)
        batch = self.predictor.prepare([image])
        if self.segmentation:
            self.predictor.segment(batch, [image.shape[:2]])
        else:
            self.predictor.classify(batch)

    def handle(self, data: list[dict], context) -> list[bytes]:
        answers: list[bytes | None] = [None] * len(data)
        accepted: dict[int, Request] = {}
        for idx, raw in enumerate(data):
            try:
                accepted[idx] = self._accept(raw, _headers(context, idx))
            except RejectedInput as exc:
                answers[idx] = self._refuse(context, idx, exc)
        if accepted:
            for idx, answer in zip(accepted, self._predict(list(accepted.values())), strict=True):
                context.set_response_content_type(idx, answer.content_type)
                for name, value in {VERSION_HEADER: self.version, **answer.headers}.items():
                    context.set_response_header(idx, name, value)
                answers[idx] = answer.body
        return answers

    def _accept(self, raw: dict, headers: dict[str, str]) -> Request:
        """Options first (cheap to refuse), then the image; times both as pre-processing."""
        started = time.perf_counter()
        output = self._output(raw, headers)
        rle = _flag(_option(raw, headers, "rle"))
        k = _count(_option(raw, headers, "top_k"), self.serving.top_k)
        image = decode_image(_image_bytes(raw, headers), self.serving.max_pixels, self.predictor.config.in_channels)
        tensor = self.predictor.prepare([image])
        self.metrics.preprocessed(time.perf_counter() - started, image.shape[0] * image.shape[1])
        return Request(image, tensor, output, rle, k)

    def _output(self, raw: dict, headers: dict[str, str]) -> str:
        allowed = SEGMENTATION_OUTPUTS if self.segmentation else ("topk", "json")
        output = _option(raw, headers, "output") or self._from_accept(headers.get("accept", ""))
        if output not in allowed:
            raise RejectedInput("bad_option", f"output {output!r} is not one of {', '.join(allowed)}")
        return output

    def _from_accept(self, accept: str) -> str:
        if not self.segmentation:
            return "topk"
        types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        default = self.serving.default_output if self.serving.default_output in SEGMENTATION_OUTPUTS else "mask"
        if JSON in types:
            return "json"
        if PNG in types and default not in IMAGE_OUTPUTS:
            return "mask"
        return default

    def _predict(self, requests: list[Request]) -> list[Answer]:
        batch = torch.cat([r.tensor for r in requests])
        started = time.perf_counter()
        if self.segmentation:
            results = self.predictor.segment(batch, [r.image.shape[:2] for r in requests])
        else:
            results = list(self.predictor.classify(batch))
        self.metrics.batch(len(requests), time.perf_counter() - started)
        return [self._encode(request, result) for request, result in zip(requests, results, strict=True)]

    def _encode(self, request: Request, result: np.ndarray) -> Answer:
        names = self.predictor.class_names
        if not self.segmentation:
            return Answer(json.dumps(top_k(result, names, request.k)).encode(), JSON)
        counts = np.bincount(result.ravel(), minlength=len(names))
        self.metrics.class_fractions({name: float(c) / result.size for name, c in zip(names, counts, strict=True)})
        if request.output == "json":
            return Answer(json.dumps(mask_summary(result, names, request.rle)).encode(), JSON)
        colours = self.predictor.colours
        key = {CLASSES_HEADER: json.dumps(legend(counts, names, colours), separators=(",", ":"))}
        if request.output == "overlay":
            return Answer(overlay_png(request.image, result, colours), PNG, key)
        if request.output == "cutout":
            return Answer(cutout_png(request.image, result), PNG, key)
        return Answer(mask_png(result, colours), PNG, key)

    def _refuse(self, context, idx: int, exc: RejectedInput) -> bytes:
        context.set_response_status(exc.status, HTTPStatus(exc.status).phrase, idx)
        context.set_response_content_type(idx, JSON)
        self.metrics.rejected(exc.reason)
        return json.dumps(exc.as_json()).encode()


def _headers(context, idx: int) -> dict[str, str]:
    """HTTP headers by lower-case name (TorchServe mixes them with per-field dicts)."""
    return {k.lower(): v for k, v in context.get_all_request_header(idx).items() if isinstance(v, str)}


def _image_bytes(raw: dict, headers: dict[str, str]) -> bytes:
    name = next((n for n in IMAGE_FIELDS if n in raw), None) or next((n for n in raw if n not in NOT_IMAGES), None)
    if name is None:
        raise RejectedInput("no_image", _no_image_message(headers.get("content-type", "")))
    value = raw[name]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    kind = "JSON" if isinstance(value, (dict, list)) else "text"
    raise RejectedInput("wrong_content_type", f"the {name!r} field arrived as {kind} "
                        f"(Content-Type {headers.get('content-type', 'none')!r}); send image bytes with "
                        "Content-Type image/png, image/jpeg, image/webp or image/tiff", status=415)


def _no_image_message(content_type: str) -> str:
    if content_type.startswith("application/x-www-form-urlencoded"):
        return ("the body was sent as a URL-encoded form (curl's default for --data-binary); send the image with "
                "-H 'Content-Type: image/png' (or jpeg, webp, tiff), or as a multipart field: -F data=@IMAGE")
    return "the request carries no image; send it as the body, or as a multipart field named data"


def _option(raw: dict, headers: dict[str, str], name: str) -> str | None:
    value = raw.get(name, headers.get("x-segflow-" + name.replace("_", "-")))
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise RejectedInput("bad_option", f"option {name} is not UTF-8 text") from None
    return None if value is None else str(value).strip().lower()


def _flag(value: str | None) -> bool:
    if value is None or value in FALSE:
        return False
    if value in TRUE:
        return True
    raise RejectedInput("bad_option", f"rle={value!r} is not a yes/no value; use rle=true or rle=false")


def _count(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise RejectedInput("bad_option", f"top_k={value!r} is not a positive integer")
    return int(value)


_service = SegflowHandler()


def handle(data: list[dict] | None, context):
    """TorchServe's function entry point: data=None once to initialise the worker, then each batch."""
    if data is None:
        _service.initialize(context)
        return None
    return _service.handle(data, context)
