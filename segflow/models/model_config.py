"""ModelConfig: everything needed to rebuild a network and feed it, saved as model.json beside the weights.

A leaf module (it imports only the recipe's types) so that every model builder, the compressed
models and the layers above can name the config without importing the registry.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from segflow.config.recipe import ClassSpec, Task


class ModelConfig(BaseModel):
    """Everything needed to rebuild a network and feed it: saved as model.json beside the weights."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    task: Task
    classes: list[ClassSpec]
    in_channels: int
    input_size: tuple[int, int]
    params: dict[str, Any] = {}
    binary: bool = False  # one sigmoid output channel instead of num_classes softmax channels
    mean: list[float]
    std: list[float]
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def out_channels(self) -> int:
        return 1 if self.binary else self.num_classes
