"""Quality on the real data sets: Fashion-MNIST test accuracy and Dubai aerial 6-class mean IoU.

    .venv/bin/python bench/quality.py [--cases fashion,aerial] [--full]

Each case is a real `segflow train` run (Ray Train, the recipe's fixed seeds and splits) on
../shared/datasets, evaluated by the training run itself on its held-out split: Fashion-MNIST's
own 10,000 test images; the aerial recipe's validation split (20% of the source images, grouped
so no image's patches sit on both sides, seed 42). mIoU is the true mean of the per-class IoUs
over the classes present, not a pooled Jaccard.

The default is a reduced, honest mode sized for a 2-core CPU (minutes, not hours): each case's
budget is written beside its figure. `--full` runs the recipes' full budgets (ResNet18 for
Fashion-MNIST, the aerial U-Net at depth 4 / width 32 for 40 epochs): hours on CPU, sized
for a GPU machine.

Goals (issue 9): Fashion-MNIST >= 94% test accuracy; aerial >= 0.65 mIoU.

Writes docs/results/quality.json and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from common import machine, now, save
from segflow.config import load_recipe
from segflow.evaluate.metrics import QUALITY
from segflow.progress import SILENT
from segflow.train import train

# case: (recipe, goal, reduced overrides, full overrides)
CASES = {
    "fashion": ("fashion", 0.94, [],
                ["model.name=resnet18", "training.epochs=30", "training.lr=0.001", "training.scheduler=onecycle"]),
    "aerial": ("aerial", 0.65, ["model.params={depth: 4, width: 16}", "training.epochs=6"], []),
}


def run_case(name: str, full: bool, work: Path) -> dict:
    recipe_name, goal, reduced, complete = CASES[name]
    load = round(os.getloadavg()[0], 2)
    overrides = complete if full else reduced
    recipe = load_recipe(recipe_name, overrides)
    started = time.monotonic()
    outcome = train(recipe, str(work / name), progress=SILENT)
    wall = time.monotonic() - started
    evaluation = outcome.evaluation.evaluation
    metric = QUALITY[recipe.task]
    value = float(evaluation.metrics[metric])
    history = outcome.fit.history
    classes = [c.name for c in getattr(recipe.data, "classes", None) or []]  # Fashion-MNIST's are built in
    per_class = evaluation.metrics.get("iou") if recipe.task == "segmentation" else None
    return {
        "date": now(), "load_average_1m_at_start": load, "recipe": recipe_name,
        "mode": "full" if full else "reduced", "overrides": overrides,
        "model": {"name": recipe.model.name, "params": recipe.model.params}, "epochs": len(history),
        "split": evaluation.split, "metric": metric, "value": value, "goal": goal, "reached": value >= goal,
        "per_class_iou": dict(zip(classes, per_class, strict=False)) if per_class else None,
        "val_curve": [r.get(f"val_{metric}") for r in history], "wall_s": round(wall, 1),
        "command": f"segflow train {recipe_name} " + " ".join(f"--set '{o}'" for o in overrides),
    }


def section(results: dict) -> str:
    m = results["machine"]
    rows = ["| data set | model and budget | split | metric | measured | goal | wall time |",
            "|---|---|---|---|---:|---:|---:|"]
    for name, c in results["cases"].items():
        size = ", ".join(f"{k} {v}" for k, v in (c["model"]["params"] or {}).items())
        rows.append(f"| {name} | {c['model']['name']}{f' ({size})' if size else ''}, {c['epochs']} epochs "
                    f"({c['mode']}) | {c['split']} | {c['metric']} | {c['value']:.4f} | {c['goal']} "
                    f"{'reached' if c['reached'] else '**not reached**'} | {c['wall_s'] / 60:.1f} min |")
    notes = []
    for name, c in results["cases"].items():
        notes.append(f"- {name}: `{c['command']}`")
        if c.get("per_class_iou"):
            notes.append("  per-class IoU: " + ", ".join(f"{k} {v:.2f}" for k, v in c["per_class_iou"].items()
                                                         if v is not None and not math.isnan(v)))
    return "\n".join([
        "## Quality on real data (`bench/quality.py`)",
        "",
        f"`{results['command']}` on {m['cores']} CPU cores ({m['cpu']}), torch {m['torch']}. Fixed seeds and splits "
        "(the recipes'); Fashion-MNIST on its 10,000 test images, aerial on the recipe's validation split (20% "
        "of the source images, grouped by image, seed 42); mIoU is the mean of per-class IoUs. The reduced mode "
        "is sized for minutes on a 2-core CPU and is what these rows ran unless they say full; `--full` runs the "
        f"budgets the goals need (hours on CPU). Measured {results['date']}; raw numbers in "
        "`docs/results/quality.json`.",
        "",
        *rows,
        "",
        *notes,
    ])


def headline(results: dict) -> list[tuple[str, str, str]]:
    return [(f"{name} {c['metric']} ({c['split']}, {c['mode']} budget: {c['epochs']} epochs)", f"{c['value']:.4f}",
             f">= {c['goal']}") for name, c in results["cases"].items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--full", action="store_true", help="the full budgets (hours on CPU)")
    args = parser.parse_args()
    results = {"date": now(), "machine": machine(), "command": " ".join(["bench/quality.py", *sys.argv[1:]]),
               "cases": {}}
    with tempfile.TemporaryDirectory(prefix="sf-quality-bench-") as tmp:
        for name in args.cases.split(","):
            results["cases"][name] = case = run_case(name, args.full, Path(tmp))
            print(f"{name}: {case['metric']} {case['value']:.4f} in {case['wall_s'] / 60:.1f} min", flush=True)
    save("quality", results)
    print(section(results))


if __name__ == "__main__":
    main()
