"""The dataset manifest: what a prepared dataset version holds, and proof of where it came from.

Training, evaluation and serving read classes, colours and shapes from here, never from the
recipe again, so a model always matches the data it was trained on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from segflow.config.recipe import ClassSpec, Task

SCHEMA_VERSION = 1


class ShardInfo(BaseModel):
    images: str
    targets: str
    count: int
    images_sha256: str
    targets_sha256: str


class SplitStats(BaseModel):
    sources: int
    samples: int
    class_counts: list[int]
    ignored: int = 0

    def fractions(self) -> list[float]:
        total = sum(self.class_counts)
        return [c / total if total else 0.0 for c in self.class_counts]


class ColourPolicyReport(BaseModel):
    """Pixels by colour that were not class colours, and in how many files they appeared."""

    pixels: dict[str, int] = {}
    files: dict[str, int] = {}


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    name: str
    format: str
    task: Task
    classes: list[ClassSpec]
    ignore_index: int
    sample_shape: tuple[int, ...]
    target_unit: str  # "pixels" for masks, "samples" for labels: what class_counts count
    splits: dict[str, SplitStats]
    shards: dict[str, list[ShardInfo]]
    ignored_colours: ColourPolicyReport
    unknown_colours: ColourPolicyReport
    sources: dict[str, str]
    source_root: str
    input_hash: str
    dataset_hash: str = ""
    prep_version: int
    segflow_version: str
    created_at: str
    recipe: dict[str, Any]

    def content_hash(self) -> str:
        """sha256 of what defines the data (shards, classes, splits), not of when or where it was made."""
        content = self.model_dump(
            mode="json", include={"task", "classes", "ignore_index", "sample_shape", "splits", "shards"}
        )
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    @property
    def num_classes(self) -> int:
        return len(self.classes)
