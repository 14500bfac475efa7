"""Run NNI's DARTS strategy on a prepared dataset and hand back the chosen architecture.

DARTS (first order, `nni.nas.strategy.DARTS`) trains the supernet's weights on the train split
and its architecture weights on the val split, through NNI's Lightning evaluator: a per-pixel
cross-entropy (ignore_index) module for segmentation, NNI's `Classification` evaluator for
classification. Images are normalised exactly as `segflow train` will normalise them, so the
search sees the inputs the retrained model will see.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars
from torch import nn

from segflow.compress.darts_space import DartsSpace  # first: it checks that pytorch-lightning is installed
from segflow.config.recipe import Recipe
from segflow.data import PreparedDataset
from segflow.models import ModelConfig
from segflow.models.darts import SpaceSize
from segflow.models.preprocess import normalize
from segflow.progress import TERMINAL, Progress

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # NNI 3.0 does not know torch 2.13's newer nn classes
    from nni.nas.evaluator.pytorch import Classification, DataLoader, Lightning, LightningModule, Trainer
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace
    from nni.nas.strategy import DARTS
    from pytorch_lightning import Callback

NOISY_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "nni")


@dataclass(frozen=True)
class SearchResult:
    architecture: dict[str, Any]  # label -> op name, or the chosen predecessors of a node
    probabilities: dict[str, dict[str, float]]  # softmax of the architecture weights, per label
    supernet_loss: float  # mean training loss of the supernet in the last epoch
    wall_time_s: float


class _Samples(torch.utils.data.Dataset):
    """uint8 NHWC images + targets of one split, normalised one at a time (the split may be memory-mapped)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, config: ModelConfig):
        self.images, self.targets, self.config = images, targets, config

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index])).permute(2, 0, 1)
        target = torch.as_tensor(np.asarray(self.targets[index]), dtype=torch.long)
        return normalize(image, self.config.mean, self.config.std), target


class PixelCrossEntropy(LightningModule):
    """Per-pixel cross-entropy with the dataset's ignore_index: DARTS' loss for both of its steps."""

    def __init__(self, ignore_index: int, lr: float, weight_decay: float):
        super().__init__()
        self.ignore_index, self.lr, self.weight_decay = ignore_index, lr, weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, masks = batch
        return F.cross_entropy(self(images), masks, ignore_index=self.ignore_index)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class SearchProgress(Callback):
    """A rich bar over the search's steps and a line per epoch, like `segflow train` shows (bar only on a terminal)."""

    def __init__(self, console: Console):
        self.console, self.losses, self.epoch_loss = console, [], float("nan")
        self.progress = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, disable=not sys.stderr.isatty(), transient=True)

    def on_train_start(self, trainer, pl_module):
        self.progress.start()
        self.task = self.progress.add_task("DARTS search", total=trainer.max_epochs * trainer.num_training_batches)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))
        self.progress.update(self.task, advance=1, description=f"DARTS epoch {trainer.current_epoch + 1}/"
                             f"{trainer.max_epochs} loss {self.losses[-1]:.4f}")

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_loss, self.losses = float(np.mean(self.losses)), []
        self.console.print(f"search epoch {trainer.current_epoch + 1}  supernet train_loss {self.epoch_loss:.4f}",
                           highlight=False)

    def on_train_end(self, trainer, pl_module):
        self.progress.stop()


def search(recipe: Recipe, dataset: PreparedDataset, config: ModelConfig, space: str, size: SpaceSize,
           epochs: int, progress: Progress = TERMINAL) -> SearchResult:
    """Search `space` at `size` for `epochs` epochs; `config` gives the classes and the normalisation."""
    started = time.monotonic()
    torch.manual_seed(recipe.training.seed)
    model_space = DartsSpace(space, config.in_channels, config.num_classes, size)
    if recipe.training.channels_last:  # as in training: oneDNN's convolutions are faster in NHWC on CPU too
        model_space.to(memory_format=torch.channels_last)
    bar = SearchProgress(progress.console)
    with tempfile.TemporaryDirectory(prefix="segflow-darts-") as tmp, _quiet():
        evaluator = _evaluator(recipe, dataset, config, _trainer_options(recipe, epochs, bar, tmp))
        strategy = DARTS(gradient_clip_val=recipe.training.grad_clip)
        strategy(RawFormatModelSpace.from_model(model_space, evaluator), SequentialExecutionEngine())
        architecture = next(strategy.list_models()).sample
        probabilities = strategy.oneshot_module.export_probs()
    return SearchResult(dict(architecture), _rounded(probabilities), bar.epoch_loss,
                        time.monotonic() - started)


def _evaluator(recipe: Recipe, dataset: PreparedDataset, config: ModelConfig, options: dict) -> Lightning:
    train, val = (DataLoader(_Samples(*dataset.arrays(split), config), batch_size=recipe.training.batch_size,
                             shuffle=True) for split in ("train", "val"))
    optimiser = {"lr": recipe.training.lr, "weight_decay": recipe.training.weight_decay}
    if config.task == "classification":
        return Classification(criterion=nn.CrossEntropyLoss, learning_rate=optimiser["lr"],
                              weight_decay=optimiser["weight_decay"], optimizer=torch.optim.AdamW,
                              train_dataloaders=train, val_dataloaders=val, num_classes=config.num_classes,
                              **options)
    return Lightning(PixelCrossEntropy(config.ignore_index, **optimiser), Trainer(**options),
                     train_dataloaders=train, val_dataloaders=val)


def _trainer_options(recipe: Recipe, epochs: int, progress: SearchProgress, root: str) -> dict:
    gpu = recipe.training.use_gpu and torch.cuda.is_available()
    return {"max_epochs": epochs, "accelerator": "gpu" if gpu else "cpu", "devices": 1, "logger": False,
            "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
            "num_sanity_val_steps": 0, "default_root_dir": root, "callbacks": [progress]}


def _rounded(probabilities: dict) -> dict[str, dict[str, float]]:
    return {label: {str(option): round(p, 4) for option, p in options.items()}
            for label, options in probabilities.items()}


@contextmanager
def _quiet():
    """Lightning's and NNI's chatter (tips, 'no val loader', dataloader-worker hints) off while searching."""
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="pytorch_lightning|lightning|nni")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
