"""The training loop every Ray Train worker runs: read top to bottom, one epoch at a time.

    train_worker -> setup (data, model, optimiser) -> restore checkpoint
                 -> for each epoch: train_one_epoch, validate, report (+ checkpoint)

Rank 0 writes the checkpoint; every rank calls ray.train.report the same number of times.
Validation metrics are synced across ranks by torchmetrics, so stop decisions (early
stopping, a non-finite loss) are identical everywhere and no rank is left waiting.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset

from segflow.data import open_dataset
from segflow.evaluate import metrics as metric_fns
from segflow.models import create_model, probabilities
from segflow.models.preprocess import normalize
from segflow.train.data import ArrayDataset, classification_augment, segmentation_augment
from segflow.train.job import TrainJob
from segflow.train.objective import build_objective
from segflow.train.profile import StepProfiler

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
PROGRESS_INTERVAL_S = 0.5
STOP_CHECK_STEPS = 20  # how often a stoppable run asks whether to stop (every rank at the same steps)
STOPPED_ON_REQUEST = "stop requested"


class _StopRequested(Exception):
    """The run's driver asked it to end (a search scheduler stopped the trial)."""


@dataclass
class _Run:
    """What one worker holds while training."""

    job: TrainJob
    device: torch.device
    model: nn.Module
    objective: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    train_loader: DataLoader
    val_loader: DataLoader
    rank: int
    world: int
    progress: object = None
    stop_signal: object = None  # a segflow.train.fit.StopSignal actor, for runs a search may stop
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0

    @property
    def amp(self) -> bool:
        return self.device.type == "cuda" and self.job.recipe.training.amp

    @property
    def channels_last(self) -> bool:
        # NHWC is what oneDNN (CPU) and cuDNN tensor cores run fastest: 2-4x per step on CPU here.
        return self.job.recipe.training.channels_last


def train_worker(config: dict) -> dict:
    """Entry point of each Ray Train worker (TorchTrainer's train_loop_per_worker).

    Returns how the run ended; Ray hands rank 0's value to the driver (Result.return_value),
    which is the only way an epoch reported without a checkpoint (a NaN loss) reaches it.
    """
    job = TrainJob.model_validate(config["job"])
    run = _setup(job, config.get("progress"), config.get("resume_from"))
    run.stop_signal = config.get("stop")
    record = {"epoch": run.start_epoch, "stopped": ""}
    for epoch in range(run.start_epoch, job.epochs):
        try:
            trained = train_one_epoch(run, epoch)
        except _StopRequested:
            return {"epoch": record["epoch"], "stopped": STOPPED_ON_REQUEST}
        record = {"epoch": epoch + 1, **trained, **validate(run),
                  "lr": run.optimizer.param_groups[0]["lr"], "resumed": epoch == run.start_epoch > 0}
        record["stopped"] = _stop_reason(run, record)
        run.history.append(record)
        _report(run, record, save=record["stopped"] != "non-finite loss")
        if record["stopped"]:
            break
    return {"epoch": record["epoch"], "stopped": record["stopped"]}


def _setup(job: TrainJob, progress, resume_from: ray.train.Checkpoint | None) -> _Run:
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    _seed(job.recipe.training.seed + rank)
    device = ray.train.torch.get_device()
    train_loader, val_loader = _loaders(job, rank, world)
    model = create_model(job.model, job.init_weights)
    if job.recipe.training.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(model)
    steps = len(train_loader) * job.epochs
    optimizer = _optimizer(job, model)
    run = _Run(
        job=job, device=device, model=model, objective=build_objective(job, model, device),
        optimizer=optimizer, scheduler=_scheduler(job, optimizer, steps),
        scaler=torch.amp.GradScaler(enabled=device.type == "cuda" and job.recipe.training.amp),
        train_loader=train_loader, val_loader=val_loader, rank=rank, world=world, progress=progress,
    )
    _restore(run, ray.train.get_checkpoint() or resume_from)  # the run's own checkpoint first (a restart)
    return run


def _loaders(job: TrainJob, rank: int, world: int) -> tuple[DataLoader, DataLoader]:
    dataset = open_dataset(job.dataset_uri, job.dataset_version)
    images, targets = dataset.arrays("train")
    task, batch = job.recipe.task, job.recipe.training.batch_size
    augment = None
    if job.recipe.training.augment:
        augment = segmentation_augment() if task == "segmentation" else classification_augment(images.shape[1])
    generator = torch.Generator().manual_seed(job.recipe.training.seed)
    train = DataLoader(ArrayDataset(images, targets), batch_size=batch, shuffle=True, collate_fn=augment,
                       drop_last=len(images) > batch * world, generator=generator)
    train = ray.train.torch.prepare_data_loader(train, move_to_device=False)
    val_images, val_targets = dataset.arrays("val")
    # Each rank validates a disjoint slice (no padding, unlike DistributedSampler); metric
    # states are summed across ranks, so every sample counts exactly once.
    val = DataLoader(Subset(ArrayDataset(val_images, val_targets), range(rank, len(val_images), world)),
                     batch_size=batch)
    return train, val


def train_one_epoch(run: _Run, epoch: int) -> dict:
    """One pass over this rank's shard: the mean training loss over all ranks, and how fast it went.

    `train_images_per_s` counts every rank's images over this rank's wall time of the pass
    (data loading, step, progress updates included; validation and checkpoints not), the
    figure bench/training.py compares with a plain PyTorch loop.
    """
    run.model.train()
    _set_epoch(run.train_loader, epoch)
    total, count, last_update = torch.zeros(2, device=run.device), 0, 0.0
    profiler = StepProfiler.for_run(run, epoch)
    started = time.perf_counter()
    with profiler:
        for step, (images, targets) in enumerate(run.train_loader):
            images, targets = _to_device(run, images, targets)
            with _autocast(run):
                loss, _ = run.objective.loss(images, targets)
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            if run.job.recipe.training.grad_clip:
                run.scaler.unscale_(run.optimizer)
                nn.utils.clip_grad_norm_(run.model.parameters(), run.job.recipe.training.grad_clip)
            run.scaler.step(run.optimizer)
            run.scaler.update()
            if run.scheduler is not None:
                run.scheduler.step()
            total += torch.stack([loss.detach().float() * len(images), torch.tensor(float(len(images)), device=run.device)])
            count += 1
            if count % STOP_CHECK_STEPS == 0 and _stop_requested(run):
                raise _StopRequested
            profiler.step()
            if run.rank == 0 and run.progress is not None and time.monotonic() - last_update > PROGRESS_INTERVAL_S:
                last_update = time.monotonic()
                run.progress.update.remote(epoch + 1, run.job.epochs, step + 1, len(run.train_loader), float(loss))
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = time.perf_counter() - started
    profiler.publish(run.job.run_uri)
    loss = _global_mean(run, total)
    return {"train_loss": loss, "train_steps": count, "train_seconds": round(seconds, 3),
            "train_images_per_s": round(float(total[1]) / seconds, 2) if seconds > 0 else math.nan}


@torch.no_grad()
def validate(run: _Run) -> dict:
    run.model.eval()
    task = run.job.recipe.task
    collection = metric_fns.build_metrics(task, run.job.model.num_classes, run.job.model.ignore_index).to(run.device)
    total = torch.zeros(2, device=run.device)
    for images, targets in run.val_loader:
        images, targets = _to_device(run, images, targets)
        with _autocast(run):
            loss, logits = run.objective.label_loss(images, targets)
        total += torch.stack([loss.float() * len(images), torch.tensor(float(len(images)), device=run.device)])
        metric_fns.update(collection, probabilities(logits.float(), run.job.model.binary), targets)
    return {"val_loss": _global_mean(run, total), **metric_fns.summarise(collection, task)}


def _stop_requested(run: _Run) -> bool:
    """Whether the driver asked to stop; every rank gets the same answer, so DDP ranks stop together."""
    if run.stop_signal is None:
        return False
    flag = torch.tensor(float(ray.get(run.stop_signal.requested.remote())), device=run.device)
    if run.world > 1:
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _stop_reason(run: _Run, record: dict) -> str:
    if not math.isfinite(record["train_loss"]) or not math.isfinite(record["val_loss"]):
        return "non-finite loss"
    patience = run.job.recipe.training.early_stopping_patience
    if patience is None or len(run.history) < patience:
        return ""
    metric, mode = run.job.monitored
    values = [r[metric] for r in run.history] + [record[metric]]
    best_index = int(np.argmin(values) if mode == "min" else np.argmax(values))
    return "early stopping" if len(values) - 1 - best_index >= patience else ""


def _report(run: _Run, record: dict, save: bool) -> None:
    """Report the epoch on every rank; rank 0 attaches a checkpoint (unless the loss broke)."""
    with tempfile.TemporaryDirectory(prefix="segflow-ckpt-") as tmp:
        checkpoint = None
        if save and run.rank == 0:
            folder = Path(tmp)
            torch.save({
                "model": _unwrap(run.model).state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict() if run.scheduler else None,
                "scaler": run.scaler.state_dict(),
                "epoch": record["epoch"],
            }, folder / STATE_FILE)
            (folder / HISTORY_FILE).write_text(json.dumps(run.history))
            (folder / "model.json").write_text(run.job.model.model_dump_json())
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        summary = metric_fns.scalars(record) | {"stopped": record["stopped"]}
        ray.train.report(summary, checkpoint=checkpoint)
    if run.rank == 0 and run.progress is not None:
        run.progress.epoch_end.remote(summary)


def _restore(run: _Run, checkpoint) -> None:
    if checkpoint is None:
        return
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location=run.device, weights_only=True)
        history = json.loads((Path(folder) / HISTORY_FILE).read_text())
    _unwrap(run.model).load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None and state["scheduler"] is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.history = state["epoch"], history


def _optimizer(job: TrainJob, model: nn.Module) -> torch.optim.Optimizer:
    t = job.recipe.training
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=0.9, weight_decay=t.weight_decay, nesterov=True)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def _scheduler(job: TrainJob, optimizer, total_steps: int):
    """Stepped once per batch, so the schedule is the same for any worker count."""
    kind, total_steps = job.recipe.training.scheduler, max(1, total_steps)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=job.recipe.training.lr, total_steps=total_steps)
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, total_steps // 3), gamma=0.1)
    return None


def _to_device(run: _Run, images: torch.Tensor, targets):
    images = normalize(images.to(run.device, non_blocking=True), run.job.model.mean, run.job.model.std)
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, torch.as_tensor(targets).to(run.device, non_blocking=True)


def _autocast(run: _Run):
    if not run.amp:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _global_mean(run: _Run, total: torch.Tensor) -> float:
    """Sample-weighted mean over all ranks of a (sum, count) pair (summed in place: `total` ends global)."""
    if run.world > 1 and dist.is_initialized():
        dist.all_reduce(total)
    return float(total[0] / total[1]) if total[1] > 0 else math.nan


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
