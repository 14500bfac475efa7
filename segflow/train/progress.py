"""A progress bar on the driver for training that happens in Ray workers.

Rank 0 pushes its step count and loss to a tiny actor (fire-and-forget); the driver polls it
and draws a rich progress bar plus one line per finished epoch. An actor, unlike a file,
works when the workers run on other nodes (a KubeRay cluster). Without a terminal the bar is
skipped and only the epoch lines are printed, which keeps CI and pipeline logs readable.
"""

from __future__ import annotations

import sys
import threading

import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

POLL_S = 0.3
SHOWN = ("train_loss", "val_loss", "val_miou", "val_mean_dice", "val_accuracy", "val_top5")


@ray.remote(num_cpus=0)
class ProgressBoard:
    def __init__(self):
        self.step: dict = {}
        self.epochs: list[dict] = []

    def update(self, epoch: int, epochs: int, step: int, steps: int, loss: float) -> None:
        self.step = {"epoch": epoch, "epochs": epochs, "step": step, "steps": steps, "loss": loss}

    def epoch_end(self, record: dict) -> None:
        self.epochs.append(record)

    def snapshot(self, seen: int) -> tuple[dict, list[dict]]:
        return self.step, self.epochs[seen:]


def follow(board, thread: threading.Thread, console: Console | None = None) -> None:
    """Draw the board until `thread` (running trainer.fit) ends."""
    console = console or Console(stderr=True)
    interactive = sys.stderr.isatty()
    seen = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not interactive, transient=True) as progress:
        task = progress.add_task("starting Ray workers", total=None)
        while thread.is_alive():
            thread.join(POLL_S)
            step, finished = ray.get(board.snapshot.remote(seen))
            seen += len(finished)
            for record in finished:
                console.print(format_epoch(record), highlight=False)
            if step:
                progress.update(task, total=step["steps"], completed=step["step"],
                                description=f"epoch {step['epoch']}/{step['epochs']} loss {step['loss']:.4f}")


def format_epoch(record: dict) -> str:
    parts = [f"epoch {record['epoch']}"] + [f"{k} {record[k]:.4f}" for k in SHOWN if k in record]
    if "train_images_per_s" in record:
        parts.append(f"{record['train_images_per_s']:.0f} img/s")
    if record.get("resumed"):
        parts.append("(resumed from checkpoint)")
    if record.get("stopped"):
        parts.append(f"stopped: {record['stopped']}")
    return "  ".join(parts)
