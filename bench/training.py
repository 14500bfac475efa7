"""Training throughput: segflow's training loop against a plain PyTorch loop on the same model and data.

    .venv/bin/python bench/training.py [--cases quickstart,fashion] [--epochs 3]

For each case, side by side in one run:
- segflow: `segflow.train.train` for real (Ray Train, one worker holding every core,
  checkpoints, validation, progress actor), augmentation off so both sides see the same
  pixels; its history records the images per second of each epoch's training pass
  (validation and checkpointing excluded); the figure is the median over the epochs.
- plain: the loop one would write by hand with the same model from the registry, the same
  batch size, optimiser (AdamW, the recipe's lr and weight decay), cosine schedule, gradient
  clipping, loss (cross entropy) and memory format, over the same training images held in
  memory as one normalised float tensor, shuffled each epoch, with as many torch threads as
  the segflow worker has CPUs. It runs once before and once after segflow and the figure is
  the mean, so a change in machine load falls on both sides.

The ratio segflow / plain is the throughput issue 9 asks to keep >= 0.95 on CPU. The plain loop
also runs in the other memory format on CPU (NCHW vs channels-last; fp32 eager NCHW vs AMP +
channels-last on a GPU) to show what the recipe's choice buys.

Writes docs/results/training.json and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import machine, now, save
from segflow.config import load_recipe
from segflow.data import open_dataset, prep
from segflow.models.preprocess import normalize
from segflow.progress import SILENT
from segflow.train import model_config_for, train

# case: (recipe, overrides that make the segflow run the one the plain loop copies)
CASES = {
    "quickstart": ("quickstart", ["data.num_images=2400"]),
    "fashion": ("fashion", []),
}
PLAIN_STEPS_CAP = 200  # steps per plain-loop pass: enough for a steady rate, an epoch at most
GOAL = 0.95


def segflow_rate(recipe, dataset_uri: str, work: Path, epochs: int) -> dict:
    """Images per second of segflow's own training passes (median over the epochs)."""
    started = time.monotonic()
    outcome = train(recipe, str(work / "segflow"), dataset_uri=dataset_uri, progress=SILENT)
    history = outcome.fit.history
    rates = [r["train_images_per_s"] for r in history]
    return {"images_per_s": statistics.median(rates), "per_epoch": [r["train_images_per_s"] for r in history],
            "steps_per_epoch": history[0]["train_steps"], "wall_s": round(time.monotonic() - started, 1),
            "epochs": len(history)}


def plain_rate(recipe, config, images: np.ndarray, targets: np.ndarray, device: torch.device, *,
               channels_last: bool, amp: bool, steps: int) -> float:
    """Images per second of a hand-written loop: the same model, optimiser, schedule, clipping and loss."""
    t = recipe.training
    torch.manual_seed(t.seed)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    from segflow.models import create_model

    model = create_model(config).to(device, memory_format=memory).train()
    x = normalize(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), config.mean, config.std)
    x = x.to(device).contiguous(memory_format=memory)
    y = torch.from_numpy(np.ascontiguousarray(targets)).long().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    criterion = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(enabled=amp)
    order = torch.randperm(len(x), device=device)
    batches = [order[i:i + t.batch_size] for i in range(0, len(x) - t.batch_size + 1, t.batch_size)][:steps]

    def step(index: torch.Tensor) -> None:
        with torch.autocast(device.type, enabled=amp):
            loss = criterion(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()

    for index in batches[:3]:  # warm-up: oneDNN / cuDNN pick their kernels on the first shapes
        step(index)
    _sync(device)
    started = time.perf_counter()
    for index in batches:
        step(index)
    _sync(device)
    return len(batches) * t.batch_size / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(name: str, epochs: int, work: Path) -> dict:
    recipe_name, overrides = CASES[name]
    load = round(os.getloadavg()[0], 2)
    gpu = torch.cuda.is_available()
    cores = os.cpu_count() or 1
    settings = [*overrides, f"training.epochs={epochs}", "training.num_workers=1", f"training.cpus_per_worker={cores}",
                "training.augment=false", "training.loss=cross_entropy", f"training.use_gpu={str(gpu).lower()}"]
    recipe = load_recipe(recipe_name, settings)
    dataset = open_dataset(prep(recipe, None, str(work / "data"), progress=SILENT).uri)
    config = model_config_for(recipe, dataset)
    images, targets = dataset.arrays("train")
    device = torch.device("cuda" if gpu else "cpu")
    torch.set_num_threads(cores)  # what Ray gives a worker with `cores` CPUs
    steps = min(PLAIN_STEPS_CAP, len(images) // recipe.training.batch_size)
    same = {"channels_last": recipe.training.channels_last, "amp": gpu and recipe.training.amp}
    # the other format: fp32 eager NCHW against the recipe's AMP on a GPU; the opposite memory format on CPU
    other = {"channels_last": False if gpu else not same["channels_last"], "amp": False}
    print(f"{name}: plain loop ({steps} steps)", flush=True)
    before = plain_rate(recipe, config, images, targets, device, steps=steps, **same)
    print(f"{name}: segflow train ({epochs} epochs)", flush=True)
    ours = segflow_rate(recipe, dataset.uri, work, epochs)
    print(f"{name}: plain loop again, and in the other format", flush=True)
    after = plain_rate(recipe, config, images, targets, device, steps=steps, **same)
    variant = plain_rate(recipe, config, images, targets, device, steps=steps, **other)
    plain = (before + after) / 2
    return {
        "date": now(), "load_average_1m_at_start": load, "recipe": recipe_name,
        "overrides": settings, "model": {"name": config.name, "params": config.params},
        "input_size": list(config.input_size), "batch_size": recipe.training.batch_size,
        "train_images": len(images), "device": device.type, "threads": cores,
        "segflow": ours, "plain": {"images_per_s": plain, "runs": [before, after], "steps": steps, **same},
        "plain_other_format": {"images_per_s": variant, **other},
        "ratio": ours["images_per_s"] / plain,
    }


def section(results: dict) -> str:
    m = results["machine"]
    rows = ["| case | model, input, batch | segflow img/s | plain PyTorch img/s | ratio (goal >= 0.95) "
            "| plain, other format |", "|---|---|---:|---:|---:|---|"]
    for name, c in results["cases"].items():
        other = c["plain_other_format"]
        fmt = "channels-last" if other["channels_last"] else "NCHW fp32"
        before, after = c["plain"]["runs"]
        epochs = " / ".join(f"{rate:.0f}" for rate in c["segflow"]["per_epoch"])
        rows.append(f"| {name} | {c['model']['name']} {c['input_size'][0]}x{c['input_size'][1]}, batch "
                    f"{c['batch_size']} | {c['segflow']['images_per_s']:.1f} (epochs {epochs}) | "
                    f"{c['plain']['images_per_s']:.1f} (before {before:.0f}, after {after:.0f}) | "
                    f"{c['ratio']:.3f} {'yes' if c['ratio'] >= GOAL else '**no**'} | {fmt}: "
                    f"{other['images_per_s']:.1f} img/s |")
    device = m.get("gpu") or f"{m['cores']} CPU cores ({m['cpu']})"
    return "\n".join([
        "## Training throughput: segflow vs a plain PyTorch loop (`bench/training.py`)",
        "",
        f"`{results['command']}` on {device}, torch {m['torch']}; 1-minute load average at the start "
        f"{m['load_average_at_start'][0]}. segflow: a real `train` run (Ray Train, 1 worker with every core, "
        "validation and checkpoints each epoch), its training passes' images/s (median over the epochs). "
        "Plain: the same model, batch, optimiser, schedule, clipping, loss and memory format over the same images "
        "held in memory as one normalised tensor, run before and after segflow (mean). Augmentation is off on "
        f"both sides. {'No GPU on this machine: the AMP + channels-last vs fp32 eager comparison needs one (it runs when CUDA is there).' if not m.get('gpu') else ''}"  # noqa: E501
        f" Measured {results['date']}; raw numbers in `docs/results/training.json`.",
        "",
        *rows,
    ])


def headline(results: dict) -> list[tuple[str, str, str]]:
    return [(f"training throughput, {name} (segflow / plain PyTorch)", f"{c['ratio']:.3f}", ">= 0.95")
            for name, c in results["cases"].items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--epochs", type=int, default=3, help="segflow epochs per case")
    args = parser.parse_args()
    results = {"date": now(), "machine": machine(), "command": " ".join(["bench/training.py", *sys.argv[1:]]),
               "cases": {}}
    with tempfile.TemporaryDirectory(prefix="sf-train-bench-") as tmp:
        for name in args.cases.split(","):
            case = run_case(name, args.epochs, Path(tmp) / name)
            results["cases"][name] = case
            print(f"{name}: segflow {case['segflow']['images_per_s']:.1f} img/s, plain "
                  f"{case['plain']['images_per_s']:.1f} img/s, ratio {case['ratio']:.3f}", flush=True)
    save("training", results)
    print(section(results))


if __name__ == "__main__":
    main()
