"""The handler's custom metrics, under exactly the names serving/metrics.yaml declares.

TorchServe's frontend drops every model metric its metrics config does not declare, so the YAML
is the one list of names: the worker's metrics cache is filled from it (TorchServe does that
when it is started with this YAML as `metrics_config`; `ModelMetrics` adds any that are missing
when the archive runs under another config, where they are then logged but not exported).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ts.metrics.metric_cache_errors import MetricsCacheKeyError
from ts.metrics.metric_type_enum import MetricTypes

METRICS_YAML = Path(__file__).with_name("metrics.yaml")


def declared_metrics() -> dict[str, tuple[MetricTypes, dict]]:
    """name -> (type, spec) of every model metric in metrics.yaml."""
    section = yaml.safe_load(METRICS_YAML.read_text())["model_metrics"]
    return {spec["name"]: (MetricTypes(kind), spec) for kind, specs in section.items() for spec in specs}


class ModelMetrics:
    """Emits the segflow_* metrics for one model through a worker's metrics cache."""

    def __init__(self, cache, model_name: str):
        self._model = model_name
        self._metrics = {name: _get_or_declare(cache, name, kind, spec)
                         for name, (kind, spec) in declared_metrics().items() if name.startswith("segflow_")}

    def _emit(self, name: str, value: float, *labels: str) -> None:
        self._metrics[name].add_or_update(value, [self._model, *labels])

    def rejected(self, reason: str) -> None:
        self._emit("segflow_rejected_requests_total", 1, reason)

    def preprocessed(self, seconds: float, pixels: int) -> None:
        self._emit("segflow_preprocess_seconds", seconds)
        self._emit("segflow_image_megapixels", pixels / 1e6)

    def batch(self, size: int, seconds: float) -> None:
        self._emit("segflow_batch_size", size)
        self._emit("segflow_inference_seconds", seconds)
        self._emit("segflow_images_total", size)

    def class_fractions(self, fractions: dict[str, float]) -> None:
        for name, fraction in fractions.items():
            self._emit("segflow_class_pixel_fraction", fraction, name)


def _get_or_declare(cache, name: str, kind: MetricTypes, spec: dict):
    try:
        return cache.get_metric(name, kind)
    except MetricsCacheKeyError:
        return cache.add_metric_to_cache(name, spec["unit"], spec["dimensions"], kind)
