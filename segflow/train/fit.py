"""Run a TrainJob on Ray Train (Train V2 API) and hand back its history and best checkpoint.

This is the one entry point every kind of training goes through: `segflow train`, each
search trial (inside a Tune function or an NNI trial process, with an `on_epoch` hook), a DARTS
retraining and a distillation student.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.util.queue import Empty, Queue

from segflow.errors import ModelError, TrainError
from segflow.evaluate import pick_best
from segflow.models import ModelConfig
from segflow.progress import TERMINAL, Progress
from segflow.store import S3Settings, open_store
from segflow.train.job import TrainJob
from segflow.train.loop import HISTORY_FILE, STOPPED_ON_REQUEST, train_worker
from segflow.train.progress import ProgressBoard, follow
from segflow.train.signals import kept_signal_handlers

RAY_DIR = "ray"

# Called on the driver once per epoch with the epoch's metrics (rank 0) and its persisted checkpoint.
EpochHook = Callable[[dict, ray.train.Checkpoint | None], None]


@dataclass(frozen=True)
class FitResult:
    history: list[dict]
    best_checkpoint: ray.train.Checkpoint
    best_metrics: dict
    path: str
    stopped: str  # why it ended before its last epoch ("" when it ran them all)

    @property
    def stopped_on_request(self) -> bool:
        """The driver asked the run to end (a search scheduler stopped the trial): it has no result to keep."""
        return self.stopped == STOPPED_ON_REQUEST


def ensure_ray() -> None:
    """Start a local Ray (or join RAY_ADDRESS) once per process."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster needs no token
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], logging_level="WARNING")
    else:
        ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)


def ray_storage(uri: str) -> str:
    """Ray's storage_path for a store URI: an absolute folder, or s3:// with the MinIO endpoint."""
    if not uri.startswith("s3://"):
        return str(Path(uri.removeprefix("file://")).expanduser().resolve())
    settings = S3Settings.from_env()
    endpoint = urlparse(settings.endpoint if "://" in settings.endpoint else f"http://{settings.endpoint}")
    return f"{uri.rstrip('/')}?endpoint_override={endpoint.netloc}&scheme={endpoint.scheme}"


def fit(job: TrainJob, storage_uri: str, *, name: str = RAY_DIR, fresh: bool = False,
        progress: Progress = TERMINAL, on_epoch: EpochHook | None = None,
        resume_from: ray.train.Checkpoint | None = None, stop: threading.Event | None = None) -> FitResult:
    """Train `job` with checkpoints under STORAGE_URI/NAME; an earlier run there is resumed.

    `on_epoch` sees every epoch as it ends, in the calling thread (a search reports from there);
    it replaces the progress board. `resume_from` starts from another run's checkpoint (a
    search's trial restored or cloned by PBT) when NAME holds none. Setting `stop` (from any
    thread) ends the run within a few steps, cleanly: its workers and their placement group are
    released, which killing the process that called fit would not do.
    """
    ensure_ray()
    training = job.recipe.training
    if fresh:
        _delete_run(storage_uri, name)
    _check_resumable(storage_uri, name, job)
    relay = Queue(actor_options={"num_cpus": 0}) if on_epoch else None
    signal = StopSignal.remote() if stop is not None else None
    board = ProgressBoard.remote() if progress.shown and relay is None else None
    metric, mode = job.monitored
    trainer = TorchTrainer(
        train_worker,
        # Ray Train 2's trainers refuse resume_from_checkpoint; the workers take it from their config
        train_loop_config={"job": job.model_dump(mode="json"), "progress": board, "stop": signal,
                           "resume_from": resume_from},
        scaling_config=ScalingConfig(
            num_workers=training.num_workers,
            use_gpu=training.use_gpu,
            resources_per_worker={"CPU": training.cpus_per_worker} | ({"GPU": 1} if training.use_gpu else {}),
        ),
        run_config=RunConfig(
            name=name,
            storage_path=ray_storage(storage_uri),
            failure_config=FailureConfig(max_failures=training.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode
            ),
            callbacks=[_EpochRelay(relay)] if relay is not None else [],  # an empty Queue is falsy
        ),
    )
    result = _run(trainer, board, progress, relay, on_epoch, _StopForwarder(stop, signal))
    if result.error is not None:
        raise TrainError(f"training failed after {training.max_failures} restart(s): {result.error}") from None
    if result.checkpoint is None:
        raise TrainError("training produced no checkpoint: the first epoch did not complete")
    with result.checkpoint.as_directory() as folder:
        history = json.loads((Path(folder) / HISTORY_FILE).read_text())
    ending = result.return_value or {"stopped": ""}
    stopped = ending["stopped"]
    if stopped == "non-finite loss":
        raise TrainError(
            f"the loss became NaN/inf in epoch {ending['epoch']}; training stopped and the last good "
            f"checkpoint (epoch {len(history)}) is kept at {result.checkpoint.path}. Lower training.lr, "
            "keep training.grad_clip set, or check the data for broken labels"
        )
    best, best_metrics = _best(result, metric, mode)
    return FitResult(history, best, best_metrics, result.path, stopped)


@ray.remote(num_cpus=0)
class StopSignal:
    """Set by the driver, read by the workers every few steps (segflow.train.loop.STOP_CHECK_STEPS)."""

    def __init__(self):
        self.flag = False

    def request(self) -> None:
        self.flag = True

    def requested(self) -> bool:
        return self.flag


class _EpochRelay(ray.train.UserCallback):
    """Forwards each reported epoch to the driver: Ray Train calls it in its controller actor."""

    def __init__(self, relay: Queue):
        self.relay = relay

    def after_report(self, run_context, metrics, checkpoint):
        self.relay.put((metrics[0], checkpoint))


@dataclass
class _StopForwarder:
    """Passes the driver's threading.Event on to the workers' StopSignal, once."""

    event: threading.Event | None
    signal: object
    sent: bool = False

    def poll(self) -> None:
        if self.event is not None and self.event.is_set() and not self.sent:
            self.signal.request.remote()
            self.sent = True


def _run(trainer: TorchTrainer, board, progress: Progress, relay: Queue | None, on_epoch: EpochHook | None,
         stop: _StopForwarder):
    """trainer.fit() in a thread, while this thread draws the progress board or relays epochs."""
    if board is None and relay is None and stop.event is None:
        with kept_signal_handlers():  # Ray Train's Ctrl-C handler aborts this run, then goes
            return trainer.fit()
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised below in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="segflow-fit", daemon=True)
    thread.start()
    if board is not None:
        follow(board, thread, progress.console)
    else:
        _relay_epochs(relay, thread, on_epoch, stop)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _relay_epochs(relay: Queue | None, thread: threading.Thread, on_epoch: EpochHook | None,
                  stop: _StopForwarder) -> None:
    while True:
        stop.poll()
        if relay is None:
            thread.join(timeout=0.5)
            if not thread.is_alive():
                return
            continue
        try:
            metrics, checkpoint = relay.get(timeout=0.5)
        except Empty:
            if not thread.is_alive() and relay.empty():
                return
            continue
        on_epoch(metrics, checkpoint)


def _best(result, metric: str, mode: str):
    best = pick_best(result.best_checkpoints or [], lambda pair: pair[1].get(metric), mode)
    if best is None:
        raise TrainError(
            f"no reported epoch has the monitored metric {metric!r}; set training.monitor to one the "
            f"run reports: {', '.join(sorted(result.metrics or {}))}"
        )
    return best


def _check_resumable(storage_uri: str, name: str, job: TrainJob) -> None:
    """Refuse to resume checkpoints written for another network (Ray would retry and fail N times)."""
    store = open_store(storage_uri).child(name)
    configs = sorted(o.key for o in store.list() if o.key.endswith("/model.json"))
    if not configs:
        return
    earlier = ModelConfig.model_validate_json(store.get_text(configs[-1]))
    fields = ("name", "classes", "in_channels", "params", "binary")
    changed = [f for f in fields if getattr(earlier, f) != getattr(job.model, f)]
    if changed:
        raise ModelError(
            f"{store.uri} holds checkpoints of another model (different {', '.join(changed)}: "
            f"{', '.join(f'{f}={getattr(earlier, f)!r}' for f in changed)}); pass --fresh to start over "
            "there, or choose another --out"
        )


def _delete_run(storage_uri: str, name: str) -> None:
    store = open_store(storage_uri).child(name)
    local = store.local_path()
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    for obj in store.list():
        store.delete(obj.key)
