"""Search benchmark: every `segflow tune` algorithm on one recipe, and ASHA vs random search.

    .venv/bin/python bench/search.py [--recipe quickstart] [--algos nni:tpe,ray:asha,...] [--set KEY=VALUE ...]

Each algorithm runs the real command (`python -m segflow.cli.main tune RECIPE --backend B --algo A`)
in a subprocess with the same reduced budget (--trials, --max-epochs, --concurrency) and the same
prepared dataset, so the wall times compare. For "ASHA vs random" it counts, for each of the two
Ray runs, the trial-epochs spent until the search first reached the better run's best metric
minus a tolerance: the budget a scheduler saves shows there, not in the best metric.

Writes docs/results/search.json and the search section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import now, save

NNI = ("tpe", "anneal", "evolution", "smac", "hyperband", "metis", "bohb", "gp", "dngo")
RAY = ("random", "asha", "optuna", "hyperopt", "bohb", "pbt")
TOLERANCE = 0.01  # "reached the best" = within this of the best metric


def run_one(recipe: str, backend: str, algo: str, dataset: str, out: Path, budget: list[str],
            overrides: list[str]) -> dict:
    command = [sys.executable, "-m", "segflow.cli.main", "tune", recipe, "--backend", backend, "--algo", algo,
               "--dataset", dataset, "--out", str(out), *budget, *(a for o in overrides for a in ("--set", o))]
    # Metis cannot sample loguniform: the bench gives it the same range on a linear scale.
    if algo == "metis":
        command += ["--set", "search.space.lr={type: uniform, low: 0.0003, high: 0.01}"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        return {"backend": backend, "algo": algo, "ok": False, "wall_s": wall, "error": done.stderr[-2000:]}
    summary = json.loads((out / "search.json").read_text())
    mode = summary["mode"]
    best = [_best(t["curve"], mode) for t in summary["trials"]]
    return {"backend": backend, "algo": algo, "ok": True, "wall_s": round(wall, 1), "trials": len(best),
            "trial_epochs": sum(len(t["curve"]) for t in summary["trials"]), "best": _best(best, mode),
            "mode": mode, "metric": summary["metric"], "curves": [t["curve"] for t in summary["trials"]]}


def _best(curve: list[float], mode: str) -> float:
    return (max if mode == "max" else min)(curve) if curve else float("nan")


def epochs_to_reach(curves: list[list[float]], target: float, mode: str) -> int | None:
    """Trial-epochs spent, in trial order, until some epoch reaches `target` (None: never)."""
    spent = 0
    for curve in curves:
        for value in curve:
            spent += 1
            if (value >= target) if mode == "max" else (value <= target):
                return spent
    return None


def section(results: dict) -> str:
    rows = ["| backend | algorithm | trials | trial-epochs | best " + results["metric"] + " | wall time |",
            "|---|---|---:|---:|---:|---:|"]
    for r in results["runs"]:
        if r["ok"]:
            rows.append(f"| {r['backend']} | {r['algo']} | {r['trials']} | {r['trial_epochs']} | {r['best']:.4f} | "
                        f"{r['wall_s']:.0f} s |")
        else:
            rows.append(f"| {r['backend']} | {r['algo']} | failed | | | {r['wall_s']:.0f} s |")
    eff = results.get("asha_vs_random")
    efficiency = ("" if not eff else
                  f"ASHA vs random search on the same space and budget: best {eff['asha_best']:.4f} vs "
                  f"{eff['random_best']:.4f}; trial-epochs to reach {eff['target']:.4f} (the better best minus "
                  f"{TOLERANCE}): ASHA {eff['asha_epochs']}, random {eff['random_epochs']}; trial-epochs spent in "
                  f"all: ASHA {eff['asha_total']}, random {eff['random_total']}.")
    return "\n".join([
        "## Search: every `segflow tune` algorithm (`bench/search.py`)",
        "",
        f"Recipe `{results['recipe']}` ({', '.join(results['overrides']) or 'as packaged'}), budget "
        f"`{' '.join(results['budget'])}`; every trial trains for real through Ray Train. "
        f"{results['cores']} cores; 1-minute load average before the run {results['load_average_at_start']:.1f} "
        f"(other jobs share these cores, so wall times are upper bounds). Measured {results['date']}; raw numbers in "
        "`docs/results/search.json`.",
        "",
        *rows,
        "",
        efficiency,
    ])


def headline(results: dict) -> list[tuple[str, str, str]]:
    eff = results.get("asha_vs_random")
    ok = [r for r in results["runs"] if r["ok"]]
    rows = [("`segflow tune` algorithms that completed", f"{len(ok)} of {len(results['runs'])}", "all")]
    if eff:
        rows.append(("trial-epochs to reach the same best metric, ASHA vs random",
                     f"{eff['asha_epochs'] or 'never'} vs {eff['random_epochs'] or 'never'}", "ASHA fewer"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--algos", default=",".join([*(f"nni:{a}" for a in NNI), *(f"ray:{a}" for a in RAY)]))
    parser.add_argument("--trials", default="4")
    parser.add_argument("--max-epochs", default="2")
    parser.add_argument("--concurrency", default="2")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    budget = ["--trials", args.trials, "--max-epochs", args.max_epochs, "--concurrency", args.concurrency]
    with tempfile.TemporaryDirectory(prefix="sf-search-bench-") as tmp:
        work = Path(tmp)
        prep = [sys.executable, "-m", "segflow.cli.main", "prep", args.recipe, "--out", str(work / "data"),
                *(a for o in args.overrides for a in ("--set", o))]
        subprocess.run(prep, check=True, capture_output=True)
        runs = []
        for item in args.algos.split(","):
            backend, algo = item.split(":")
            runs.append(run_one(args.recipe, backend, algo, str(work / "data"), work / f"{backend}-{algo}", budget,
                                args.overrides))
            r = runs[-1]
            print(f"{backend:4s} {algo:10s} " + (f"{r['trials']} trials  best {r['best']:.4f}  {r['wall_s']:.0f} s"
                                                 if r["ok"] else f"FAILED after {r['wall_s']:.0f} s\n{r['error']}"),
                  flush=True)
    ok = [r for r in runs if r["ok"]]
    results = {"date": now(), "recipe": args.recipe,
               "overrides": args.overrides, "budget": budget, "cores": os.cpu_count(),
               "load_average_at_start": os.getloadavg()[0], "metric": ok[0]["metric"] if ok else "",
               "runs": runs}
    by = {r["algo"]: r for r in ok if r["backend"] == "ray"}
    if "asha" in by and "random" in by:
        mode = by["asha"]["mode"]
        target = (max if mode == "max" else min)(by["asha"]["best"], by["random"]["best"])
        target = target - TOLERANCE if mode == "max" else target + TOLERANCE
        results["asha_vs_random"] = {
            "target": target, "asha_best": by["asha"]["best"], "random_best": by["random"]["best"],
            "asha_epochs": epochs_to_reach(by["asha"]["curves"], target, mode),
            "random_epochs": epochs_to_reach(by["random"]["curves"], target, mode),
            "asha_total": by["asha"]["trial_epochs"], "random_total": by["random"]["trial_epochs"]}
    save("search", results)
    print(section(results))


if __name__ == "__main__":
    main()
