"""The NNI backend of `segflow tune`: one NNI experiment, one of nine tuners, trials as local processes.

NNI's Python API leaves the hard parts to the caller. Its manager is a Node process in a process
group of its own that outlives the driver unless stopped (after an error or Ctrl-C too); a tuner
that crashes inside the dispatcher leaves the manager reporting RUNNING forever; and
`Experiment.list_trial_jobs()` fails for Hyperband and BOHB, whose parameter ids are strings.
So this module keeps the experiment directory inside the run's workdir, watches the dispatcher
log for the tuner's own error, reads trials and metrics from the manager's REST API, and always
stops the manager and every process it started.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import ray
import requests
from nni.experiment import AlgorithmConfig, CustomAlgorithmConfig, Experiment, ExperimentConfig, launcher, rest
from nni.experiment.management import generate_experiment_id
from nni.runtime.config import get_builtin_config_file, get_config_directory

import segflow
from segflow.config.recipe import SearchSection
from segflow.errors import SearchError
from segflow.search.backend import SearchBackend, TrialSummary, best_trial
from segflow.search.nni_trial import BUDGET_KEY, import_root, load_trial
from segflow.search.nni_tuners import FIXED
from segflow.search.space import check_algo_supports, to_nni
from segflow.search.trial import TrialSpec, has_record, read_trial

DEFAULT_TIMEOUT_S = 24 * 3600.0
POLL_S = 0.5
FATAL_LOG_LINE = re.compile(r"\] ERROR \(nni\.(main|runtime\.msg_dispatcher_base)/")
STOP_GRACE_S = 10.0
START_WAIT_S = 60
START_ATTEMPTS = 3
LATE_DISPATCHER = "Tuner did not connect in 10 seconds"
_START_LOCK = threading.Lock()
SEGFLOW_ROOT = Path(segflow.__file__).resolve().parents[1]

# algo -> NNI built-in tuner, for those that work as shipped; the others are in nni_tuners.FIXED.
BUILTIN = {"evolution": "Evolution", "dngo": "DNGO"}


class DispatcherLate(SearchError):
    """NNI's manager gave up on the dispatcher: it gets 10 s (fixed in NNI) to import its tuner and connect."""

    def __init__(self, exp_dir: Path):
        super().__init__(f"NNI's dispatcher did not connect within the 10 s NNI allows, as happens on a machine "
                         f"too busy to start it (see {exp_dir / 'log' / 'nnimanager.log'})")


@dataclass(frozen=True)
class NniResult:
    experiment_id: str
    web_ui: str
    experiment_dir: Path
    best: TrialSummary  # the trial with the best final metric under search.mode
    trials: list[TrialSummary]


class NniBackend(SearchBackend):
    """NNI: each trial is `train_nni_trial` in a process of its own, joined to this driver's Ray cluster."""

    def check(self) -> None:
        check_algo_supports(self.search.algo, self.search.space)
        if self.search.scheduler:
            raise SearchError("search.scheduler is for the Ray backend; NNI's Hyperband and BOHB bring their own")

    def run(self, spec: TrialSpec, workdir: Path) -> list[TrialSummary]:
        """The trials NNI ran, each with the checkpoint and epochs its trial.json records."""
        # every trial process joins the driver's Ray cluster instead of starting its own
        args = {"spec": spec.model_dump(mode="json"), "folder": str(workdir),
                "ray_address": ray.get_runtime_context().gcs_address}
        result = run_nni(self.search, "segflow.search.trial:train_nni_trial", args, workdir)
        self.web_ui = result.web_ui
        return [_with_record(trial, workdir) for trial in result.trials]


def _with_record(trial: TrialSummary, workdir: Path) -> TrialSummary:
    folder = Path(workdir) / "trials" / trial.name
    if not has_record(folder):  # failed or stopped before the end
        return trial
    record = read_trial(folder)
    return replace(trial, checkpoint=record.checkpoint, history=record.history)


def run_nni(search: SearchSection, trial: str, trial_args: Mapping, workdir: Path, *, port: int | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S, tuner_args: Mapping | None = None) -> NniResult:
    """Search with NNI's `search.algo` tuner; `trial` is "package.module:function" run as
    `function(params, args, report) -> metric` in one process per trial.

    `args` is `trial_args` (JSON values), plus `budget` (epochs, 1..search.max_epochs) under
    Hyperband and BOHB. `report(value)` sends an intermediate result. `tuner_args` override the
    tuner's class arguments (NNI's defaults otherwise). The best trial follows `search.mode`.
    """
    check_algo_supports(search.algo, search.space)
    tuner = algorithm_config(search, tuner_args or {})
    return run_experiment(search, tuner, trial, trial_args, workdir, port=port, timeout_s=timeout_s)


def algorithm_config(search: SearchSection, overrides: Mapping) -> AlgorithmConfig:
    """NNI's tuner config for `search.algo`: built-in where it works, segflow's fixed class otherwise."""
    args = {"optimize_mode": "minimize" if search.mode == "min" else "maximize"}
    args |= _budget_args(search).get(search.algo, {}) | dict(overrides)
    if search.algo in BUILTIN:
        return AlgorithmConfig(name=BUILTIN[search.algo], class_args=args)
    return CustomAlgorithmConfig(class_name=FIXED[search.algo], code_directory=str(SEGFLOW_ROOT), class_args=args)


def _budget_args(search: SearchSection) -> dict[str, dict]:
    # Hyperband and BOHB hand each trial a budget of 1..max_epochs epochs (args["budget"]).
    return {
        "hyperband": {"R": search.max_epochs, "eta": 3},
        "bohb": {"min_budget": 1, "max_budget": search.max_epochs, "eta": 3},
        "smac": {"trials": search.trials},
    }


def run_experiment(search: SearchSection, tuner: AlgorithmConfig, trial: str, trial_args: Mapping, workdir: Path,
                   *, port: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> NniResult:
    """Run any NNI tuner config (built-in, fixed or your own) over `search`'s space and budget.

    An experiment whose dispatcher missed NNI's 10 s start-up window has run nothing yet, so it
    is stopped and started afresh, up to START_ATTEMPTS times.
    """
    load_trial(trial)
    _install_nni_config_files()
    port = port or _free_port()
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return _run_once(search, tuner, trial, trial_args, _experiment_root(workdir), port, timeout_s)
        except DispatcherLate as late:
            if attempt == START_ATTEMPTS:
                raise
            print(f"{late}; starting the experiment again ({attempt + 1}/{START_ATTEMPTS})", file=sys.stderr)


def _run_once(search: SearchSection, tuner: AlgorithmConfig, trial: str, trial_args: Mapping, root: Path,
              port: int, timeout_s: float) -> NniResult:
    experiment_id = generate_experiment_id()
    exp_dir = root / experiment_id
    spec = _write_trial_spec(exp_dir, trial, trial_args)
    experiment = Experiment(_experiment_config(search, tuner, root, exp_dir, spec), id=experiment_id)
    try:
        _start(experiment, port, exp_dir)
        web_ui = f"http://127.0.0.1:{port}"
        print(f"NNI web UI: {web_ui}  (experiment {experiment_id} in {exp_dir})", file=sys.stderr, flush=True)
        _wait(port, exp_dir, timeout_s, tuner)
        trials = _trials(port)
    finally:
        _stop(experiment)
    return NniResult(experiment_id, web_ui, exp_dir, _best(trials, search.mode), trials)


def _install_nni_config_files() -> None:
    """Put NNI's per-installation config files in place before any experiment reads them.

    NNI copies each one from its defaults the first time it is read, by creating the file and
    then writing it, so a second experiment starting meanwhile (threads or processes on a fresh
    venv) reads an empty file and fails with a JSONDecodeError. A copy renamed into place is atomic.
    """
    config_dir = get_config_directory()
    for name in ("training_services.json", "registered_algorithms.yml"):
        target = config_dir / name
        if target.exists():
            continue
        staged = config_dir / f".{name}.{os.getpid()}.{threading.get_ident()}"
        staged.write_bytes(get_builtin_config_file(name).read_bytes())
        os.replace(staged, target)


def _experiment_root(workdir: Path) -> Path:
    return Path(workdir).resolve() / "nni"


def _write_trial_spec(exp_dir: Path, trial: str, trial_args: Mapping) -> Path:
    try:
        text = json.dumps({"trial": trial, "import_root": import_root(trial), "args": dict(trial_args)}, indent=2)
    except TypeError as error:
        raise SearchError(f"trial_args must be JSON values (they travel to the trial processes): {error}") from error
    exp_dir.mkdir(parents=True, exist_ok=True)
    spec = exp_dir / "segflow-trial.json"
    spec.write_text(text)
    return spec


def _experiment_config(search: SearchSection, tuner: AlgorithmConfig, root: Path, exp_dir: Path,
                       spec: Path) -> ExperimentConfig:
    config = ExperimentConfig("local")
    config.experiment_name = f"segflow-{search.algo}"
    config.experiment_working_directory = str(root)
    config.trial_command = shlex.join([sys.executable, "-m", "segflow.search.nni_trial", str(spec)])
    config.trial_code_directory = str(exp_dir)
    config.trial_concurrency = search.concurrency
    config.max_trial_number = search.trials
    config.search_space = to_nni(search.space)
    config.tuner = tuner
    return config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(experiment: Experiment, port: int, exp_dir: Path) -> None:
    """Start the manager and wait for its dispatcher, one experiment at a time in this process.

    NNI is impatient twice: it polls a fresh manager for about 3 s and kills it if it has not
    answered, and the manager gives the dispatcher 10 s (hard-coded) to import its tuner and
    connect. On a busy two-core machine, and worse with several experiments booting at once,
    Node and the dispatcher's imports need longer. So the first check's retry count (one try per
    second) is raised while a manager starts, and starts are serialised until the dispatcher is up.
    """
    with _START_LOCK:
        upstream = launcher._check_rest_server
        launcher._check_rest_server = functools.partial(upstream, retry=START_WAIT_S)
        try:
            experiment.start(port)
        except RuntimeError as error:  # NNI's "Port N is not idle"
            raise SearchError(f"the NNI manager cannot use port {port} ({error}); pass another port") from error
        except requests.RequestException as error:
            raise SearchError(f"the NNI manager did not answer on port {port} within {START_WAIT_S} s ({error}); "
                              f"see {exp_dir / 'log' / 'nnimanager.log'}") from error
        finally:
            launcher._check_rest_server = upstream
        _wait_for_dispatcher(port, exp_dir)


def _wait_for_dispatcher(port: int, exp_dir: Path) -> None:
    """Until the dispatcher has connected, or failed, or NNI gave up on it: `_wait` reports which."""
    log = exp_dir / "log" / "dispatcher.log"
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if log.exists() and "Dispatcher started" in log.read_text(errors="replace"):
            return
        status = _status(port, exp_dir)
        if _tuner_error(exp_dir) or status["status"] == "ERROR":
            return
        time.sleep(POLL_S)


# ---- watching the experiment -------------------------------------------------------------------


def _wait(port: int, exp_dir: Path, timeout_s: float, tuner: AlgorithmConfig) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = _status(port, exp_dir)
        if status["status"] in ("DONE", "STOPPED"):
            return
        crash = _tuner_error(exp_dir)
        if status["status"] == "ERROR" or crash:
            reported = "; ".join(map(str, status.get("errors", [])))
            if LATE_DISPATCHER in reported:  # the dispatcher may still have connected just after
                raise DispatcherLate(exp_dir)
            raise SearchError(f"the NNI tuner {_tuner_name(tuner)} failed: {crash or reported}\n"
                              f"(dispatcher log: {exp_dir / 'log' / 'dispatcher.log'})")
        if time.monotonic() > deadline:
            raise SearchError(f"the NNI experiment did not finish within {timeout_s:.0f} s (status "
                              f"{status['status']}); raise timeout_s or lower search.trials")
        time.sleep(POLL_S)


def _status(port: int, exp_dir: Path) -> dict:
    try:
        return rest.get(port, "/check-status")
    except requests.RequestException as error:
        raise SearchError(f"the NNI manager stopped answering on port {port} ({error}); see "
                          f"{exp_dir / 'log' / 'nnimanager.log'}") from error


def _tuner_name(tuner: AlgorithmConfig) -> str:
    return tuner.name or tuner.class_name


def _tuner_error(exp_dir: Path) -> str | None:
    """The tuner's own error, once the dispatcher has logged one that ends it.

    NNI logs an exception from these two loggers only where it also stops the dispatcher: a tuner
    that failed to load (`nni.main`) or raised while handling a command (`msg_dispatcher_base`).
    The manager is not told and keeps reporting RUNNING, so the log is the only witness.
    """
    log = exp_dir / "log" / "dispatcher.log"
    if not log.exists():
        return None
    lines = log.read_text(errors="replace").splitlines()
    fatal = [i for i, line in enumerate(lines) if FATAL_LOG_LINE.search(line)]
    if not fatal:
        return None
    traceback = list(itertools.takewhile(lambda line: not line.startswith("["), lines[fatal[0] + 1:]))
    return traceback[-1].strip() if traceback else lines[fatal[0]]


# ---- reading results -------------------------------------------------------------------------


def _trials(port: int) -> list[TrialSummary]:
    jobs = sorted(rest.get(port, "/trial-jobs"), key=lambda job: job.get("sequenceId", 0))
    metrics = rest.get(port, "/metric-data")
    params_by_id = {str(entry["parameter_id"]): entry["parameters"]
                    for job in jobs for entry in map(json.loads, job.get("hyperParameters", []))}
    return [_trial(job, [m for m in metrics if m["trialJobId"] == job["trialJobId"]], params_by_id) for job in jobs]


def _trial(job: dict, metrics: list[dict], params_by_id: dict[str, dict]) -> TrialSummary:
    """One trial, with the parameters it ran with.

    With concurrent trials NNI's manager can file a trial's parameters under its neighbour's job
    (observed with trialConcurrency 2); the parameter id the trial reported its metrics with is
    the one its process received, and the one the tuner learns from.
    """
    parameter_id = metrics[0]["parameterId"] if metrics else _job_parameter_id(job)
    params = {k: v for k, v in params_by_id.get(str(parameter_id), {}).items() if k != BUDGET_KEY}
    finals = [_value(m["data"]) for m in metrics if m["type"] == "FINAL"]
    periodical = sorted((m["sequence"], _value(m["data"])) for m in metrics if m["type"] == "PERIODICAL")
    start, end = job.get("startTime"), job.get("endTime")
    duration = (end - start) / 1000 if start and end else None
    log_dir = Path(job["logPath"]) if job.get("logPath") else None
    return TrialSummary(job["trialJobId"], params, [value for _, value in periodical], job["status"],
                        final=finals[-1] if finals else None, duration_s=duration, log_dir=log_dir)


def _job_parameter_id(job: dict):
    entries = job.get("hyperParameters") or []
    return json.loads(entries[-1])["parameter_id"] if entries else None


def _value(data: str) -> float:
    """A reported metric: NNI stores the SDK's JSON text ("0.25"), itself JSON-encoded ('"0.25"')."""
    return float(json.loads(json.loads(data)))


def _best(trials: list[TrialSummary], mode: str) -> TrialSummary:
    """The best trial by its final metric (a trial ends by reporting one); the error names every trial if none did."""
    best = best_trial([trial for trial in trials if trial.final is not None], mode)
    if best is None:
        statuses = ", ".join(f"{trial.name} {trial.status}" for trial in trials) or "none ran"
        raise SearchError(f"no NNI trial reported a final metric ({statuses}){_first_failure(trials)}")
    return best


def _first_failure(trials: list[TrialSummary]) -> str:
    """'; trial X ended with: <last stderr line> (<stderr path>)', for the first trial that wrote one."""
    for trial in trials:
        stderr = trial.log_dir / "trial.stderr" if trial.log_dir else None
        lines = stderr.read_text(errors="replace").split("\n") if stderr and stderr.is_file() else []
        last = next((line.strip() for line in reversed(lines) if line.strip()), None)
        if last:
            return f"; trial {trial.name} ended with: {last} ({stderr})"
    return ""


# ---- stopping --------------------------------------------------------------------------------


def _stop(experiment: Experiment) -> None:
    """Stop the manager (it stops its trials and dispatcher), then kill whatever it left behind.

    The manager is found by its command line, not by `Experiment`'s handle, which is still empty
    when Ctrl-C lands while the manager is starting.
    """
    started = [process for manager in _managers(experiment.id) for process in _with_descendants(manager)]
    try:
        experiment.stop()
    finally:
        _, alive = psutil.wait_procs(started, timeout=STOP_GRACE_S)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=STOP_GRACE_S)


def _managers(experiment_id: str) -> list[psutil.Process]:
    return [process for process in psutil.process_iter(["cmdline"])
            if _flag_value(process.info["cmdline"] or [], "--experiment-id") == experiment_id]


def _flag_value(cmdline: list[str], flag: str) -> str | None:
    return cmdline[cmdline.index(flag) + 1] if flag in cmdline[:-1] else None


def _with_descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
