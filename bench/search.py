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

from common import RESULTS, now, save

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
    efficiency = ("" if not eff or "error" in eff else
                  f"ASHA vs random search, both seeded alike (the same configurations in the same order), budget "
                  f"`{' '.join(eff['budget'])}`: best {eff['asha_best']:.4f} vs {eff['random_best']:.4f}; "
                  f"trial-epochs to reach {eff['target']:.4f} (the better best minus {TOLERANCE}): ASHA "
                  f"{eff['asha_epochs'] or 'never'}, random {eff['random_epochs'] or 'never'}; trial-epochs in all: "
                  f"ASHA {eff['asha_total']}, random {eff['random_total']}; wall time ASHA {eff['asha_wall_s']:.0f} s, "
                  f"random {eff['random_wall_s']:.0f} s.")
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
    if eff and "error" not in eff:
        rows.append(("trial-epochs to reach the same best metric, ASHA vs random",
                     f"{eff['asha_epochs'] or 'never'} vs {eff['random_epochs'] or 'never'}", "ASHA fewer"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--algos", default=",".join([*(f"nni:{a}" for a in NNI), *(f"ray:{a}" for a in RAY)]),
                        help="backend:algo list for the table; empty keeps the table of the last run")
    parser.add_argument("--trials", default="4")
    parser.add_argument("--max-epochs", default="2")
    parser.add_argument("--concurrency", default="2")
    parser.add_argument("--efficiency-trials", default="8", help="ASHA vs random: trials of each (0: skip)")
    parser.add_argument("--efficiency-max-epochs", default="4", help="ASHA vs random: epochs per trial at most")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    budget = ["--trials", args.trials, "--max-epochs", args.max_epochs, "--concurrency", args.concurrency]
    efficiency_budget = ["--trials", args.efficiency_trials, "--max-epochs", args.efficiency_max_epochs,
                         "--concurrency", args.concurrency]
    results = {"date": now(), "recipe": args.recipe, "overrides": args.overrides, "budget": budget,
               "cores": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="sf-search-bench-") as tmp:
        work = Path(tmp)
        prep = [sys.executable, "-m", "segflow.cli.main", "prep", args.recipe, "--out", str(work / "data"),
                *(a for o in args.overrides for a in ("--set", o))]
        subprocess.run(prep, check=True, capture_output=True)
        if args.algos:
            runs = [report(run_one(args.recipe, *item.split(":"), str(work / "data"), work / item.replace(":", "-"),
                                   budget, args.overrides)) for item in args.algos.split(",")]
            ok = [r for r in runs if r["ok"]]
            results |= {"metric": ok[0]["metric"] if ok else "", "runs": runs}
        else:  # keep the table of the last run
            results = json.loads((RESULTS / "search.json").read_text()) | {"efficiency_date": results["date"]}
        if int(args.efficiency_trials):
            pair = {algo: report(run_one(args.recipe, "ray", algo, str(work / "data"), work / f"efficiency-{algo}",
                                         efficiency_budget, args.overrides)) for algo in ("random", "asha")}
            results["asha_vs_random"] = efficiency(pair, efficiency_budget)
    save("search", results)
    print(section(results))


def report(run: dict) -> dict:
    print(f"{run['backend']:4s} {run['algo']:10s} " + (
        f"{run['trials']} trials  best {run['best']:.4f}  {run['wall_s']:.0f} s" if run["ok"]
        else f"FAILED after {run['wall_s']:.0f} s\n{run['error']}"), flush=True)
    return run


def efficiency(pair: dict[str, dict], budget: list[str]) -> dict:
    """Trial-epochs each of the two seeded searches (same configurations, same order) spent to reach the
    better best metric minus TOLERANCE, and in all."""
    asha, random = pair["asha"], pair["random"]
    if not (asha["ok"] and random["ok"]):
        return {"budget": budget, "error": asha.get("error") or random.get("error")}
    mode = asha["mode"]
    target = (max if mode == "max" else min)(asha["best"], random["best"])
    target = target - TOLERANCE if mode == "max" else target + TOLERANCE
    return {"budget": budget, "target": target, "asha_best": asha["best"], "random_best": random["best"],
            "asha_epochs": epochs_to_reach(asha["curves"], target, mode),
            "random_epochs": epochs_to_reach(random["curves"], target, mode),
            "asha_total": asha["trial_epochs"], "random_total": random["trial_epochs"],
            "asha_wall_s": asha["wall_s"], "random_wall_s": random["wall_s"]}


if __name__ == "__main__":
    main()
