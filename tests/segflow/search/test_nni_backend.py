"""Real NNI experiments: all nine tuners, the web UI, crash detection, and nothing left running.

Every experiment starts NNI's Node manager, a dispatcher and one Python process per trial on
loopback. The nine tuner runs share one session fixture that runs two at a time: much of an
experiment's wall time is NNI waiting (trial polling, the dispatcher's 3 s shutdown), which
overlaps well even on two cores.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from nni.experiment import AlgorithmConfig, CustomAlgorithmConfig
from nni_trial_functions import CRASH_MESSAGE, loss

from segflow.config.recipe import SearchSection
from segflow.errors import SearchError
from segflow.search.nni_backend import NniResult, run_experiment, run_nni
from segflow.search.space import NNI_ALGOS

HERE = Path(__file__).resolve().parent

TRIALS = 4
MAX_EPOCHS = 3
PARALLEL_EXPERIMENTS = 2
SPACE = {
    "x": {"type": "uniform", "low": -2.0, "high": 2.0},
    "n": {"type": "randint", "low": 1, "high": 5},
    "q": {"type": "quniform", "low": 0, "high": 10, "q": 2},
    "c": {"type": "choice", "values": [1, 2, 4]},
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
}
MAXIMIZED = {"evolution", "bohb"}  # the rest minimise, so both modes run for real
# GP's model takes over after 2 results instead of NNI's default 10, so its fixed acquisition search
# runs inside NNI too. (Metis's model costs tens of seconds per suggestion; test_nni_tuners covers it.)
TUNER_ARGS = {"gp": {"cold_start_num": 2, "selection_num_warm_up": 200, "selection_num_starting_points": 3}}


def search(algo: str, space: dict = SPACE, **overrides) -> SearchSection:
    if algo == "metis":  # Metis cannot sample loguniform (refused up front, see test_nni_space)
        space = {name: spec for name, spec in space.items() if spec["type"] != "loguniform"}
    fields = {"backend": "nni", "algo": algo, "trials": TRIALS, "concurrency": 2, "max_epochs": MAX_EPOCHS,
              "mode": "max" if algo in MAXIMIZED else "min", "space": space} | overrides
    return SearchSection(**fields)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def leftover_processes(workdir: Path) -> list[str]:
    """Live processes whose command line or environment names an experiment started in `workdir`
    (the manager, the dispatcher, trials); a busy machine may have needed more than one start."""
    experiments = [path.name for path in (workdir / "nni").iterdir() if path.name != "_latest"]
    assert experiments, f"no experiment was started in {workdir}"
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            text = " ".join(process.info["cmdline"] or []) + " " + " ".join(process.environ().values())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if process.pid != os.getpid() and any(experiment in text for experiment in experiments):
            found.append(f"{process.pid}: {' '.join(process.info['cmdline'] or [])[:200]}")
    return found


class UiProbe(threading.Thread):
    """GETs the web UI's front page while the experiment runs, until it answers 200."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.url, self.done, self.answer = f"http://127.0.0.1:{port}/", threading.Event(), None

    def run(self) -> None:
        while not self.done.is_set():
            try:
                response = requests.get(self.url, timeout=2)
                self.answer = (response.status_code, response.text)
                if response.ok:
                    return
            except requests.RequestException:  # not listening yet
                pass
            self.done.wait(0.2)


@dataclass
class Run:
    algo: str
    workdir: Path
    result: NniResult | None
    error: str | None
    ui_answer: tuple[int, str] | None
    leftovers: list[str]
    wall_s: float


def run_one(algo: str, workdir: Path) -> Run:
    port, start = free_port(), time.monotonic()
    probe = UiProbe(port)
    probe.start()
    result, error = None, None
    args = {"expects_budget": algo in ("hyperband", "bohb"), "max_epochs": MAX_EPOCHS}
    try:
        result = run_nni(search(algo), "nni_trial_functions:quadratic", args, workdir, port=port, timeout_s=240,
                         tuner_args=TUNER_ARGS.get(algo))
    except Exception:
        error = traceback.format_exc()
    probe.done.set()
    probe.join()
    leftovers = leftover_processes(workdir)
    return Run(algo, workdir, result, error, probe.answer, leftovers, time.monotonic() - start)


@pytest.fixture(scope="session")
def nine_runs(tmp_path_factory) -> dict[str, Run]:
    workdirs = [tmp_path_factory.mktemp(algo) for algo in NNI_ALGOS]  # mktemp is not thread-safe
    with ThreadPoolExecutor(max_workers=PARALLEL_EXPERIMENTS) as pool:
        runs = list(pool.map(run_one, NNI_ALGOS, workdirs))
    print(f"\nNNI tuners (trials, best metric, wall time; {PARALLEL_EXPERIMENTS} experiments at a time):",
          file=sys.stderr)
    for run in runs:
        best = f"{run.result.best.final:.4f}" if run.result else "FAILED"
        trials = len(run.result.trials) if run.result else 0
        print(f"  {run.algo:10s} {trials} trials  best {best}  {run.wall_s:5.1f} s", file=sys.stderr)
    return {run.algo: run for run in runs}


@pytest.mark.slow
@pytest.mark.parametrize("algo", NNI_ALGOS)
def test_tuner_completes_a_real_experiment(nine_runs, algo):
    run = nine_runs[algo]
    assert run.error is None, run.error
    result = run.result
    assert len(result.trials) == TRIALS
    assert [trial.status for trial in result.trials] == ["SUCCEEDED"] * TRIALS
    space = search(algo).space
    for trial in result.trials:
        assert set(trial.params) == set(space), "TRIAL_BUDGET must not leak into params"
        assert trial.final == pytest.approx(loss(trial.params)), "metric filed under another trial's params"
        assert trial.curve == pytest.approx([trial.final + 1.0, trial.final + 0.5])
        assert trial.duration_s > 0
    pick = max if algo in MAXIMIZED else min
    assert result.best.final == pick(trial.final for trial in result.trials)
    assert loss(result.best.params) == pytest.approx(result.best.final)


@pytest.mark.slow
@pytest.mark.parametrize("algo", NNI_ALGOS)
def test_experiment_lives_in_the_workdir_and_leaves_no_process(nine_runs, algo):
    run = nine_runs[algo]
    assert run.result is not None, run.error
    assert run.result.experiment_dir == run.workdir.resolve() / "nni" / run.result.experiment_id
    assert (run.result.experiment_dir / "log" / "dispatcher.log").is_file()
    assert not (Path.home() / "nni-experiments" / run.result.experiment_id).exists()
    assert run.leftovers == []


@pytest.mark.slow
@pytest.mark.parametrize("algo", NNI_ALGOS)
def test_web_ui_answers_while_the_experiment_runs(nine_runs, algo):
    run = nine_runs[algo]
    assert run.ui_answer is not None, f"nothing answered on {run.result.web_ui if run.result else 'the UI port'}"
    status, page = run.ui_answer
    assert status == 200 and "<title>Neural Network Intelligence</title>" in page


@pytest.mark.slow
def test_smac_keeps_its_run_history_in_the_experiment(nine_runs):
    run = nine_runs["smac"]
    assert run.result is not None, run.error
    assert (run.result.experiment_dir / "checkpoint" / "smac3").is_dir()


# ---- failures --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_crashing_tuner_fails_the_search_with_its_own_message(tmp_path):
    tuner = CustomAlgorithmConfig(class_name="nni_trial_functions.CrashingTuner", code_directory=str(HERE))
    start = time.monotonic()
    with pytest.raises(SearchError, match=f"failed: RuntimeError: {CRASH_MESSAGE}"):
        run_experiment(search("tpe"), tuner, "nni_trial_functions:quadratic", {}, tmp_path, timeout_s=90)
    assert time.monotonic() - start < 45, "NNI reports RUNNING forever; the crash must be seen in the log"
    assert leftover_processes(tmp_path) == []


# BOHB shares Hyperband's nni#5263 crash (the same fix), but stops on ConfigSpace first with a quniform.
UPSTREAM_CRASHES = [
    ("Hyperband", {"R": MAX_EPOCHS}, "x", r"'<=' not supported between instances of 'str' and 'int'"),
    ("BOHB", {"max_budget": MAX_EPOCHS}, "q", "unexpected keyword argument 'q'"),
]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "class_args", "parameter", "message"), UPSTREAM_CRASHES)
def test_upstream_advisor_crashes_where_the_fixed_one_completes(tmp_path, name, class_args, parameter, message):
    tuner = AlgorithmConfig(name=name, class_args={"optimize_mode": "minimize", **class_args})
    space = {"x": SPACE["x"], "n": SPACE["n"], parameter: SPACE[parameter]}
    args = {"expects_budget": True, "max_epochs": MAX_EPOCHS}
    with pytest.raises(SearchError, match=f"the NNI tuner {name} failed: .*{message}"):
        run_experiment(search("tpe", space), tuner, "nni_trial_functions:quadratic", args, tmp_path, timeout_s=90)
    assert leftover_processes(tmp_path) == []


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_failing_trials_end_the_search_with_a_pointer_to_their_logs(tmp_path):
    expected = (r"no NNI trial reported a final metric \(\w+ FAILED, \w+ FAILED\); trial \w+ ended with: "
                r"ValueError: trial failed on purpose \(.*/trial.stderr\)")
    with pytest.raises(SearchError, match=expected):
        run_nni(search("tpe", trials=2), "nni_trial_functions:fails", {}, tmp_path, timeout_s=90)
    assert leftover_processes(tmp_path) == []


def experiment_logs(workdir: Path, lines: int = 15) -> str:
    """The last lines of every log NNI wrote under `workdir` (manager, dispatcher, trials), for a failure message."""
    tails = []
    for log in sorted((workdir / "nni").glob("*/**/*")):
        if log.is_file() and log.suffix in (".log", ".stderr") and "_latest" not in log.parts:  # a symlink
            text = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {log.relative_to(workdir)}\n" + "\n".join(text))
    return "\n".join(tails) or f"(no NNI log under {workdir})"


@pytest.mark.slow
@pytest.mark.timeout(600)  # above run_nni's 240 s per start, of which a loaded machine may need 3
def test_ctrl_c_stops_the_manager_and_the_running_trial(tmp_path):
    """SIGINT once the trial function runs: the search ends with KeyboardInterrupt and leaves nothing behind.

    The trial itself says it started (a file it writes): polling NNI's REST API for a RUNNING
    trial proved unreliable on a loaded CI machine. The trial outsleeps the search's timeout, so
    a search that is never interrupted fails with NNI's logs instead of hanging the test.
    """
    handler = signal.getsignal(signal.SIGINT)
    assert handler is signal.default_int_handler, f"something earlier in this process left SIGINT to {handler!r}"
    port = free_port()
    started = tmp_path / "trial-started"
    sent, finished = threading.Event(), threading.Event()

    def interrupt_once_a_trial_runs() -> None:
        while not finished.is_set() and not started.exists():
            finished.wait(0.2)
        if not finished.is_set():
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C delivers to the driver

    threading.Thread(target=interrupt_once_a_trial_runs, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            try:
                run_nni(search("tpe", trials=1, concurrency=1), "nni_trial_functions:sleeps",
                        {"seconds": 300, "started": str(started)}, tmp_path, port=port, timeout_s=240)
            except SearchError as error:
                pytest.fail(f"the search ended without the interrupt (trial started: {started.exists()}, "
                            f"SIGINT sent: {sent.is_set()}): {error}\n{experiment_logs(tmp_path)}")
    finally:
        finished.set()
    assert leftover_processes(tmp_path) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_experiments_starting_together_on_a_fresh_install_read_complete_nni_config(tmp_path, monkeypatch):
    """NNI creates its config files lazily and non-atomically; the first CI run on a fresh venv
    started two experiments at once and one read an empty training_services.json."""
    from nni.experiment import ExperimentConfig

    from segflow.search.nni_backend import _install_nni_config_files

    monkeypatch.setenv("NNI_CONFIG_DIR", str(tmp_path))

    def start_one(_: int) -> str:
        _install_nni_config_files()
        return ExperimentConfig("local").training_service.platform

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(start_one, range(32))) == ["local"] * 32
    assert sorted(path.name for path in tmp_path.iterdir()) == ["registered_algorithms.yml", "training_services.json"]
