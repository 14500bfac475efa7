"""Pipeline wall time: `segflow run quickstart` (what `make run` runs), start to finish, on this machine.

    .venv/bin/python bench/pipeline.py [--recipe quickstart] [--set KEY=VALUE ...]

Runs the real command in a fresh process (interpreter start, imports, kfp.local, Ray start,
every pipeline step, TorchServe archive) and records its wall time, when each step finished
(from the step's executor output), and the quality the run reached.

Writes docs/results/pipeline.json and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, now, save
from segflow.pipelines.local import artifact

GOAL_S = 300


def run(recipe: str, overrides: list[str], work: Path) -> dict:
    command = [sys.executable, "-m", "segflow.cli.main", "run", recipe, "--run-dir", str(work),
               *(a for o in overrides for a in ("--set", o))]
    started_wall = time.time()
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"segflow run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    (run_folder,) = (work / "pipeline").iterdir()
    steps = {task.name: round((task / "executor_output.json").stat().st_mtime - started_wall, 1)
             for task in run_folder.iterdir() if (task / "executor_output.json").is_file()}
    metrics = artifact(run_folder / "train", "metrics")["metadata"] if "train" in steps else {}
    return {"wall_s": round(wall, 1), "step_finished_at_s": dict(sorted(steps.items(), key=lambda kv: kv[1])),
            "metrics": metrics}


def section(results: dict) -> str:
    m, r = results["machine"], results["run"]
    steps = ", ".join(f"{name} +{t:.0f} s" for name, t in r["step_finished_at_s"].items())
    quality = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items() if isinstance(v, float))
    return "\n".join([
        "## Pipeline: `segflow run quickstart` (`bench/pipeline.py`)",
        "",
        f"`{results['cli']}` in a fresh process (what `make run` runs) on {m['cores']} CPU cores ({m['cpu']}); "
        f"1-minute load average at the start {m['load_average_at_start'][0]}. Measured {results['date']}; raw "
        "numbers in `docs/results/pipeline.json`.",
        "",
        f"Wall time **{r['wall_s']:.0f} s** (goal <= {GOAL_S} s: "
        f"{'reached' if r['wall_s'] <= GOAL_S else 'not reached'}). Steps finished at: {steps}. Quality: {quality}.",
    ])


def headline(results: dict) -> list[tuple[str, str, str]]:
    return [("`segflow run quickstart` wall time", f"{results['run']['wall_s']:.0f} s", f"<= {GOAL_S} s")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    results = {"date": now(), "machine": machine(),
               "cli": " ".join(["segflow run", args.recipe, *(f"--set {o}" for o in args.overrides)])}
    with tempfile.TemporaryDirectory(prefix="sf-pipeline-bench-") as tmp:
        results["run"] = run(args.recipe, args.overrides, Path(tmp))
    save("pipeline", results)
    print(section(results))


if __name__ == "__main__":
    main()
