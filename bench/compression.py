"""Compression benchmark: teacher vs distilled student vs pruned / int8 variants, against issue 5's targets.

    .venv/bin/python bench/compression.py [--teacher MODEL_URI] [--student unet:depth=1,width=8 ...]
        [--finetune-epochs 3] [--nas] [--set key=value ...] [--work DIR]

On the quickstart recipe (synthetic shapes, generated here, no download): train the recipe's
U-Net as the teacher (or take --teacher), compress it (`segflow compress`: int8, and
prune:0.5+int8 with a short fine-tuning), distill students (`segflow distill`) and quantize
them (int8), and with --nas search, retrain and add a DARTS model (`segflow nas`, small
space). Every model is then evaluated on the same validation split and timed side by side in
one fresh process (batch 1, channels-last, the models' runs interleaved so that other load falls
on all alike), once with 1 torch thread and once with torch's default threads.

Targets (issue 5), for each model against the teacher: >= 4x fewer parameters, >= 3x lower
CPU latency p50, <= 2 points of mIoU lost.

Writes docs/results/compression.json and the benchmark section of docs/compression.md and
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch

from common import machine, now, save
from segflow.compress.compare import measure_side_by_side
from segflow.compress.compress import compress
from segflow.compress.distill import distill
from segflow.config import load_recipe
from segflow.data import open_dataset, prep
from segflow.evaluate.predict import evaluate_arrays
from segflow.models.artifact import load_model
from segflow.train.run import train

SPLIT = "val"
STUDENTS = ("unet:depth=2,width=8", "unet:depth=1,width=8")
SERVING_SIZE = (256, 256)
RUNS = 100
TARGETS = {"parameters_ratio": 4.0, "latency_ratio": 3.0, "miou_drop": 0.02}


def build_models(args: argparse.Namespace, work: Path) -> tuple[dict[str, str], dict, dict]:
    """{role: model URI} of every model the table compares, the wall time of each stage, the data."""
    recipe = load_recipe("quickstart", args.set)
    stages: dict[str, float] = {}

    def timed(name, step):
        started = time.monotonic()
        result = step()
        stages[name] = round(time.monotonic() - started, 1)
        print(f"{name}: {stages[name]:.0f} s", flush=True)
        return result

    dataset = open_dataset(timed("prep", lambda: prep(recipe, None, str(work / "dataset"), show_progress=False)).uri)
    teacher = args.teacher or timed("teacher (train)", lambda: train(
        recipe, str(work / "teacher"), dataset_uri=dataset.uri, show_progress=False)).model_uri
    models = {"teacher": teacher}
    timed("teacher int8 (compress)", lambda: compress(teacher, "int8", str(work / "teacher-int8"),
                                                      dataset_uri=dataset.uri, show_progress=False))
    models["teacher int8"] = str(work / "teacher-int8" / "model")
    timed("teacher prune:0.5+int8 (compress)", lambda: compress(
        teacher, "prune:0.5+int8", str(work / "teacher-pruned"), dataset_uri=dataset.uri,
        epochs=args.finetune_epochs, show_progress=False))
    models["teacher pruned 50% (fine-tuned)"] = str(work / "teacher-pruned" / "finetune" / "model")
    models["teacher pruned 50% + int8"] = str(work / "teacher-pruned" / "model")
    for i, spec in enumerate(args.student or STUDENTS):
        folder = work / f"student{i}"
        student = timed(f"student {spec} (distill)", lambda spec=spec, folder=folder: distill(
            recipe, teacher, spec, str(folder), dataset_uri=dataset.uri, show_progress=False)).student.model_uri
        models[f"student {i + 1} (distilled)"] = student
        timed(f"student {spec} int8 (compress)", lambda student=student, folder=folder: compress(
            student, "int8", str(folder / "int8"), dataset_uri=dataset.uri, show_progress=False))
        models[f"student {i + 1} int8"] = str(folder / "int8" / "model")
    if args.nas:
        from segflow.compress.nas import nas

        space = {"cells": 2, "width": 8, "nodes": 2}
        timed("darts (nas: search + retrain)", lambda: nas(recipe, str(work / "nas"), dataset_uri=dataset.uri,
                                                            search_epochs=args.nas_epochs, space_settings=space,
                                                            show_progress=False))
        models["darts (searched)"] = str(work / "nas" / "model")
    manifest = dataset.manifest
    data = {"recipe": recipe.name, "format": recipe.data.format, "image_size": list(recipe.data.image_size),
            "classes": [c.name for c in manifest.classes], "dataset_version": dataset.version,
            "samples": {split: stats.samples for split, stats in manifest.splits.items()},
            "training_epochs": recipe.training.epochs, "students": args.student or STUDENTS,
            "finetune_epochs": args.finetune_epochs, "nas_epochs": args.nas_epochs if args.nas else None}
    return models, stages, {"data": data, "dataset": dataset}


def side_by_side(models: dict[str, str], dataset_uri: str) -> dict[str, list[dict]]:
    """`_side_by_side` in a fresh process: none of the training runs' threads (Ray's, torch's) left beside it."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_side_by_side, models, dataset_uri).result()


def _side_by_side(models: dict[str, str], dataset_uri: str) -> dict[str, list[dict]]:
    """Every model evaluated on the same split, then timed together: {latency setting: rows}."""
    images, targets = open_dataset(dataset_uri).arrays(SPLIT)
    rows = []
    for role, uri in models.items():
        model, config, _ = load_model(uri)
        quality = evaluate_arrays(model, config, images, targets, SPLIT, device="cpu").metrics["miou"]
        rows.append((role, model, config, quality))
    default_threads = torch.get_num_threads()
    size = "x".join(map(str, rows[0][2].input_size))
    settings = {f"1 thread, {size}": (1, None), f"{default_threads} threads, {size}": (default_threads, None),
                f"1 thread, {SERVING_SIZE[0]}x{SERVING_SIZE[1]}": (1, SERVING_SIZE)}
    timings = {}
    for name, (threads, input_size) in settings.items():
        torch.set_num_threads(threads)
        sized = [(r, m, c.model_copy(update={"input_size": input_size or c.input_size}), q) for r, m, c, q in rows]
        load = os.getloadavg()[0]
        figures = measure_side_by_side(sized, runs=RUNS)
        timings[name] = [asdict(f) | {"load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)]}
                         for f in figures]
    torch.set_num_threads(default_threads)
    return timings


def targets(rows: list[dict]) -> list[dict]:
    base = rows[0]
    checked = []
    for r in rows[1:]:
        ratios = {"parameters_ratio": base["parameters"] / r["parameters"],
                  "latency_ratio": base["latency_p50_ms"] / r["latency_p50_ms"],
                  "miou_drop": base["quality"] - r["quality"]}
        reached = {"parameters_ratio": ratios["parameters_ratio"] >= TARGETS["parameters_ratio"],
                   "latency_ratio": ratios["latency_ratio"] >= TARGETS["latency_ratio"],
                   "miou_drop": ratios["miou_drop"] <= TARGETS["miou_drop"]}
        checked.append({"role": r["role"], **{k: round(v, 3) for k, v in ratios.items()},
                        "reached": reached, "all_reached": all(reached.values())})
    return checked


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def section(results: dict) -> str:
    settings = list(results["timings"])
    columns = [results["timings"][name] for name in settings]
    main = columns[0]
    verdicts = {name: {c["role"]: c for c in results["targets"][name]} for name in settings}
    lines = ["| model | parameters | size | GFLOPs | " + " | ".join(f"CPU p50, {name}" for name in settings)
             + f" | mIoU ({SPLIT}) | 4x fewer parameters / 3x lower latency / <= 2 points mIoU lost |",
             "|---|---:|---:|---:|" + "---:|" * len(settings) + "---:|---|"]
    for i, r in enumerate(main):
        latencies = " | ".join(f"{column[i]['latency_p50_ms']:.2f} ms"
                               + (f" ({column[0]['latency_p50_ms'] / column[i]['latency_p50_ms']:.1f}x)" if i else "")
                               for column in columns)
        fewer = f" ({main[0]['parameters'] / r['parameters']:.1f}x fewer)" if i else ""
        check = ""
        if i:
            reached = {name: verdicts[name][r["role"]]["reached"] for name in settings}
            others = ", ".join(f"{_yes(reached[name]['latency_ratio'])} at {name}" for name in settings[1:])
            check = (f"{_yes(reached[settings[0]]['parameters_ratio'])} / {_yes(reached[settings[0]]['latency_ratio'])}"
                     f" ({others}) / {_yes(reached[settings[0]]['miou_drop'])}")
        lines.append(f"| {r['role']}: {r['name']} | {r['parameters']:,}{fewer} | {r['size_bytes'] / 1e6:.2f} MB | "
                     f"{r['gflops']:.3f} | {latencies} | {r['quality']:.4f} | {check} |")
    m, data = results["machine"], results["data"]
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in results["stages_s"].items())
    return "\n".join([
        "## Compression benchmark (`bench/compression.py`)",
        "",
        f"Data: the `{data['recipe']}` recipe's synthetic shapes ({', '.join(data['classes'])}), "
        f"{data['image_size'][0]}x{data['image_size'][1]} images ({data['samples']['train']} train, "
        f"{data['samples'][SPLIT]} {SPLIT}), generated (no download); every model evaluated on the same {SPLIT} split. "
        f"Teacher: the recipe's U-Net trained {data['training_epochs']} epochs; students "
        f"{', '.join(f'`{s}`' for s in data['students'])} distilled from it for as many; pruning fine-tuned "
        f"{data['finetune_epochs']} more epochs"
        + (f"; DARTS searched {data['nas_epochs']} epochs and retrained {data['training_epochs']}"
           if data.get("nas_epochs") else "")
        + f". {m['cores']} cores ({m['cpu']}), torch {m['torch']}, int8 on the "
        f"{m['quantized_engine']} backend.",
        "",
        f"Latency: batch 1, channels-last, {RUNS} runs per model interleaved with the other models' (load from "
        "other jobs falls on all alike), p50, in a fresh process (in the benchmark's own process, beside the "
        "training runs' Ray and torch threads, the same models ran up to 2x slower). At the recipe's "
        f"{data['image_size'][0]}x{data['image_size'][1]} with 1 thread (the targets' column), with torch's default "
        f"threads, and at {SERVING_SIZE[0]}x{SERVING_SIZE[1]} (the serving benchmark's image size; the models are "
        "fully convolutional) with 1 thread. 1-minute load average at the start: "
        f"{m['load_average_at_start'][0]} on {m['cores']} cores shared with other jobs: two threads wait on each "
        "other whenever one of them is descheduled, so the 1-thread figures are the steady ones here. "
        f"Stages: {stages}; whole run {results['wall_time_s'] / 60:.0f} min. Measured {results['date']}; raw "
        "numbers in `docs/results/compression.json`.",
        "",
        *lines,
        "",
        "Targets against the teacher row: parameters and mIoU from the same figures, latency from the first "
        "latency column (the other columns' verdicts in brackets). int8 rows count their int8 weights as "
        "parameters (BatchNorm folded in) and the float network's FLOPs.",
    ])


def headline(results: dict) -> list[tuple[str, str, str]]:
    """The model that reaches every target with the largest latency gain (else the fastest), at the targets' setting."""
    setting = next(iter(results["targets"]))
    checked = results["targets"][setting]
    best = max(checked, key=lambda c: (c["all_reached"], c["latency_ratio"]))
    return [(f"compression, {best['role']} vs teacher ({setting})",
             f"{best['parameters_ratio']:.0f}x fewer parameters, {best['latency_ratio']:.1f}x lower latency, "
             f"{100 * best['miou_drop']:.1f} pts mIoU lost", ">= 4x, >= 3x, <= 2 pts")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", help="a trained quickstart model artifact URI (default: train one)")
    parser.add_argument("--student", action="append", help=f"a student spec to distill (repeatable; default: "
                                                            f"{' and '.join(STUDENTS)})")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="fine-tuning epochs after pruning")
    parser.add_argument("--nas", action="store_true", help="also search, retrain and compare a DARTS model")
    parser.add_argument("--nas-epochs", type=int, default=2, help="DARTS search epochs")
    parser.add_argument("--set", action="append", default=[], help="override a quickstart recipe key")
    parser.add_argument("--work", type=Path, help="where the runs go (default: a temporary folder, removed)")
    args = parser.parse_args()
    started = time.monotonic()
    results = {"date": now(), "machine": machine(),
               "command": " ".join(["bench/compression.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory(prefix="sf-compress-bench-") as tmp:
        work = args.work or Path(tmp)
        models, stages, context = build_models(args, work)
        timings = side_by_side(models, context["dataset"].uri)
    results |= {"data": context["data"], "models": models if args.work else None, "stages_s": stages,
                "timings": timings, "targets": {k: targets(rows) for k, rows in timings.items()},
                "wall_time_s": round(time.monotonic() - started, 1)}
    save("compression", results)  # docs/benchmarks.md and the section of docs/compression.md
    print(section(results))


if __name__ == "__main__":
    main()
