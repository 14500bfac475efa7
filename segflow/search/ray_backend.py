"""The Ray Tune backend: searchers and schedulers over the recipe's space, one TorchTrainer per trial.

Each trial is a Tune Trainable that builds and fits its own TorchTrainer (the Train V2 way; a
Trainer can no longer be passed to `Tuner`), one Tune step and checkpoint per epoch, so ASHA
and HyperBand can stop a trial between epochs and PBT can clone one. The experiment lives in
WORKDIR/tune; an interrupted search is picked up there with `Tuner.restore`, finished trials kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import shutil
import signal
import threading
from pathlib import Path

import ray.train
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandForBOHB, HyperBandScheduler
from ray.tune.schedulers.pbt import PopulationBasedTraining
from ray.tune.search import BasicVariantGenerator

from segflow.config.recipe import ChoiceParam, QUniformParam, SearchParam, SearchSection
from segflow.errors import SearchError
from segflow.evaluate import metrics as metric_fns
from segflow.search.backend import SearchBackend, TrialSummary, best_trial
from segflow.search.nni_tuners.values import plain
from segflow.search.trial import TrialSpec, train_trial
from segflow.train import kept_signal_handlers

# algo -> (searcher, default scheduler); `search.scheduler` may replace the scheduler.
RAY_ALGOS = {
    "random": ("random", "fifo"),
    "grid": ("grid", "fifo"),
    "optuna": ("optuna", "fifo"),
    "hyperopt": ("hyperopt", "fifo"),
    "bohb": ("bohb", "bohb"),
    "asha": ("random", "asha"),
    "hyperband": ("random", "hyperband"),
    "pbt": ("random", "pbt"),
}
EXPERIMENT = "tune"
TRIAL_DRIVER_MEMORY = 64 * 1024**2  # bytes
TUNE_SIGINT_SWITCH = "TUNE_DISABLE_SIGINT_HANDLER"  # documented: 1 leaves SIGINT to the caller
STOP_TIMEOUT_S = 120  # a stopped trial's workers finish their current few steps


def check_ray_algo(search: SearchSection) -> tuple[str, str]:
    """(searcher, scheduler) for `search`, or a SearchError naming what is valid."""
    if search.algo not in RAY_ALGOS:
        raise SearchError(f"unknown Ray Tune algorithm {search.algo!r} (search.algo); use one of: "
                          f"{', '.join(RAY_ALGOS)}")
    searcher, scheduler = RAY_ALGOS[search.algo]
    if search.scheduler:
        if searcher == "bohb" and search.scheduler != "hyperband":
            raise SearchError("bohb runs with its own HyperBand scheduler; leave search.scheduler unset")
        if search.scheduler == "pbt" and searcher != "random":
            raise SearchError(f"PBT mutates the configurations itself; use algo random or pbt, not {search.algo}")
        scheduler = "bohb" if searcher == "bohb" else search.scheduler
    if not search.space:
        raise SearchError("search.space is empty; add at least one parameter to search over")
    if searcher == "grid":
        others = [name for name, param in search.space.items() if not isinstance(param, ChoiceParam)]
        if others:
            raise SearchError(f"grid search enumerates choice parameters only; {', '.join(others)} are not "
                              "choices. Make them choices or use algo random")
    return searcher, scheduler


def tune_space(space: dict[str, SearchParam], grid: bool = False) -> dict:
    return {name: _domain(param, grid) for name, param in space.items()}


def _domain(param: SearchParam, grid: bool):
    if isinstance(param, ChoiceParam):
        return tune.grid_search(list(param.values)) if grid else tune.choice(list(param.values))
    if isinstance(param, QUniformParam):
        return tune.quniform(param.low, param.high, param.q)
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[param.type](
        param.low, param.high)


class RayBackend(SearchBackend):
    """Ray Tune: the experiment lives in WORKDIR/tune, where an interrupted search is resumed."""

    def check(self) -> None:
        check_ray_algo(self.search)

    def run(self, spec: TrialSpec, workdir: Path) -> list[TrialSummary]:
        search = self.search
        searcher, scheduler = check_ray_algo(search)
        storage = str(Path(workdir).resolve())
        trainable = tune.with_resources(tune.with_parameters(_Trial, spec=spec.model_dump(mode="json"),
                                                             folder=storage), _trial_resources())
        path = f"{storage}/{EXPERIMENT}"
        if tune.Tuner.can_restore(path):
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        else:
            algorithm = _searcher(searcher, search, spec.base_recipe().training.seed)
            tuner = tune.Tuner(
                trainable,
                param_space=tune_space(search.space, grid=searcher == "grid"),
                tune_config=tune.TuneConfig(
                    metric=search.metric, mode=search.mode, num_samples=1 if searcher == "grid" else search.trials,
                    max_concurrent_trials=None if isinstance(algorithm, BasicVariantGenerator) else search.concurrency,
                    search_alg=algorithm,
                    scheduler=_scheduler(scheduler, search),
                ),
                run_config=tune.RunConfig(
                    name=EXPERIMENT, storage_path=storage, verbose=1,
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=None if scheduler == "pbt" else 2,
                                                            checkpoint_score_attribute=search.metric,
                                                            checkpoint_score_order=search.mode,
                                                            checkpoint_frequency=1, checkpoint_at_end=True),
                ),
            )
        trials = [_trial_outcome(result, search) for result in _fit_until_ctrl_c(tuner)]
        if best_trial(trials, search.mode) is None:
            raise SearchError(f"no trial reported {search.metric!r}; see the trial errors under "
                              f"{Path(workdir) / EXPERIMENT}")
        return trials


def _fit_until_ctrl_c(tuner: tune.Tuner) -> tune.ResultGrid:
    """`tuner.fit()`, where Ctrl-C ends in KeyboardInterrupt once Tune has saved the experiment.

    Tune's own Ctrl-C handler stops the search gracefully (the state `Tuner.restore` resumes
    from is saved) but then returns the unfinished search as if it had ended, and its caller
    would publish a best trial. Here Ctrl-C asks Tune for the same graceful stop, through the
    handler Tune keeps for SIGUSR1, and raises once fit returns; a second Ctrl-C raises at once.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return tuner.fit()
    interrupted = threading.Event()

    def on_ctrl_c(signum, frame) -> None:
        stop_tune = signal.getsignal(signal.SIGUSR1)  # Tune's, from fit's start on
        if interrupted.is_set() or not callable(stop_tune):
            raise KeyboardInterrupt
        interrupted.set()
        stop_tune(signal.SIGUSR1, frame)

    disabled = os.environ.get(TUNE_SIGINT_SWITCH)
    os.environ[TUNE_SIGINT_SWITCH] = "1"
    try:
        with kept_signal_handlers():
            signal.signal(signal.SIGINT, on_ctrl_c)
            grid = tuner.fit()
    finally:
        if disabled is None:
            os.environ.pop(TUNE_SIGINT_SWITCH, None)
        else:
            os.environ[TUNE_SIGINT_SWITCH] = disabled
    if interrupted.is_set():
        raise KeyboardInterrupt("the search was interrupted; Tune saved its state for Tuner.restore")
    return grid


def _searcher(name: str, search: SearchSection, seed: int):
    """Tune's search algorithm for `name`; random sampling is seeded (the recipe's training.seed), so two
    searches over one space try the same configurations in the same order, with or without a scheduler.

    Tune wraps a Searcher in a ConcurrencyLimiter for `max_concurrent_trials`, but ignores that
    setting (with a log warning) for a BasicVariantGenerator passed in: that one is given the limit
    itself, or every trial starts at once and waits inside for CPUs.
    """
    if name == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=search.metric, mode=search.mode)
    if name == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(metric=search.metric, mode=search.mode, n_initial_points=max(1, search.trials // 2))
    if name == "bohb":
        from ray.tune.search.bohb import TuneBOHB

        return TuneBOHB(metric=search.metric, mode=search.mode)
    return BasicVariantGenerator(random_state=seed, max_concurrent=search.concurrency)  # random and grid


def _scheduler(name: str, search: SearchSection):
    epochs = {"time_attr": "training_iteration", "max_t": search.max_epochs}
    if name == "asha":
        return ASHAScheduler(**epochs, grace_period=1, reduction_factor=2)
    if name == "hyperband":
        return HyperBandScheduler(**epochs, reduction_factor=2)
    if name == "bohb":
        return HyperBandForBOHB(**epochs, reduction_factor=2)
    if name == "pbt":
        mutations = {name: _domain(param, grid=False) for name, param in search.space.items()}
        return PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=1,
                                       hyperparam_mutations=mutations)
    return FIFOScheduler()


def _trial_resources() -> dict:
    """What a trial's Tune function reserves: a little memory, no CPU.

    The function only drives its TorchTrainer, whose workers claim the CPUs (and GPUs) they train
    on. Tune's default of one CPU per trial would leave a 2-core machine one trial's workers short,
    and Tune refuses an empty request, so the reservation is memory, which every Ray node has.
    """
    return {"CPU": 0, "memory": TRIAL_DRIVER_MEMORY}


class _Trial(tune.Trainable):
    """One Tune trial: the recipe with this trial's config, fitted in a background thread, one
    Tune step per epoch.

    A class rather than a Tune function, because a scheduler stopping a trial (ASHA, HyperBand,
    PBT) must stop its TorchTrainer cleanly: `cleanup` asks the workers to stop and waits, which
    releases their CPUs. A killed function leaves its workers' placement group reserved, and the
    next trials wait for CPUs forever. A trial that Tune restores, or that PBT restarts from a
    better trial, continues from the checkpoint given to `load_checkpoint`.
    """

    def setup(self, config: dict, spec: dict, folder: str) -> None:
        self.spec = TrialSpec.model_validate(spec)
        self.folder = Path(folder) / "trials" / self.trial_id
        self.epochs: queue.Queue = queue.Queue()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self.resume_from: ray.train.Checkpoint | None = None
        self.latest: ray.train.Checkpoint | None = None

    def step(self) -> dict:
        if self.thread is None:
            self.thread = threading.Thread(target=self._fit, name="segflow-trial-fit", daemon=True)
            self.thread.start()
        item = self.epochs.get()
        if item is None:
            raise self.failure or SearchError(f"trial {self.trial_id} ended without reporting an epoch")
        metrics, self.latest = item
        return metric_fns.scalars(metrics) | {"done": metrics["epoch"] >= self.spec.max_epochs}

    def _fit(self) -> None:
        try:
            with self._folder_lock():
                train_trial(self.spec, plain(self.config), self.folder,
                            on_epoch=lambda m, c: self.epochs.put((m, c)), resume_from=self.resume_from,
                            stop=self.stop_event)
        except BaseException as exc:  # handed to Tune by the next step()
            self.failure = exc
        finally:
            self.epochs.put(None)

    @contextlib.contextmanager
    def _folder_lock(self):
        """Hold the trial's folder against an earlier actor of the same trial.

        A scheduler that pauses a trial (HyperBand, BOHB) detaches it from its actor at once and may
        resume it in a new actor while the old one still stops its Ray Train run in `cleanup`; both
        would train in one folder, and the new run's fresh start deletes what the old one writes.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
            yield

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        if self.latest is not None:
            with self.latest.as_directory() as folder:
                shutil.copytree(folder, checkpoint_dir, dirs_exist_ok=True)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        # Tune may delete its copy once this returns; the trial keeps its own.
        target = self.folder / "restored-from"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(checkpoint_dir, target)
        self.resume_from = ray.train.Checkpoint.from_directory(str(target))

    def cleanup(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=STOP_TIMEOUT_S)

    def reset_config(self, new_config: dict) -> bool:
        return False  # a fresh actor per trial


def _trial_outcome(result, search: SearchSection) -> TrialSummary:
    frame = result.metrics_dataframe
    history = [] if frame is None or search.metric not in frame else frame.to_dict("records")
    curve = [float(epoch[search.metric]) for epoch in history]
    best = result.get_best_checkpoint(search.metric, search.mode) if curve else None
    status = "ERROR" if result.error else _finished_status(len(curve), search.max_epochs)
    trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
    # BOHB's ConfigSpace hands out numpy scalars
    return TrialSummary(trial_id, plain(dict(result.config)), curve, status, _last_line(result.error),
                        checkpoint=best.path if best else None, history=history)


def _finished_status(epochs: int, max_epochs: int) -> str:
    """SUCCEEDED for a trial that ran its epoch budget, else how far it got before its scheduler stopped it."""
    return "SUCCEEDED" if epochs >= max_epochs else f"STOPPED AFTER {epochs}"


def _last_line(error: BaseException | None) -> str | None:
    """The line of a trial's error that names it: Ray wraps the exception in its remote traceback."""
    if error is None:
        return None
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
