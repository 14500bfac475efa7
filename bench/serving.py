"""Serving benchmark: TorchServe vs the same model called in-process, at 1, 8 and 32 concurrent clients.

    .venv/bin/python bench/serving.py [--model OUT/model] [--requests 100] [--time-cap 40]

Both sides run the same computation on the same 256x256 PNG: decode and check, resize,
normalise, predict, upsample, argmax, encode the mask PNG (`segflow.serving`'s Predictor and
codec). In-process, each client is a thread calling it directly; against TorchServe each client
is a thread with its own keep-alive HTTP connection on loopback. TorchServe runs twice: with
dynamic batching as the recipes configure it (batch 8, up to 10 ms wait) and without (batch 1),
so the table shows what batching costs a lone client and gains under load. Clients and server
share this machine's cores, so on a small machine the numbers are a lower bound for the server.

Writes docs/results/serving.json and the serving section of docs/benchmarks.md. Without
--model it serves the quickstart U-Net (depth 3, width 16) built at 256x256 with random
weights: latency does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import machine, now, save
from segflow.config.recipe import ClassSpec, ServingSection
from segflow.models import ModelConfig, count_parameters, create_model
from segflow.models.artifact import load_model, save_model
from segflow.serving.archive import package
from segflow.serving.client import InferenceClient
from segflow.serving.codec import decode_image, mask_png
from segflow.serving.predictor import Predictor
from segflow.serving.server import TorchServe

CLIENTS = (1, 8, 32)
SIZE = (256, 256)
WARMUP = 10
SERVERS = {
    "torchserve, batch 8 / 10 ms": ServingSection(batch_size=8, max_batch_delay_ms=10),
    "torchserve, batch 1": ServingSection(batch_size=1, max_batch_delay_ms=0),
}
IN_PROCESS = "in-process"

Call = Callable[[], None]


def quickstart_model(uri: str) -> None:
    """The quickstart recipe's U-Net at 256x256 input, random weights, saved as a model artifact."""
    classes = [ClassSpec(name=n) for n in ("background", "square", "disc", "triangle")]
    config = ModelConfig(name="unet", task="segmentation", classes=classes, in_channels=3, input_size=SIZE,
                         params={"depth": 3, "width": 16}, mean=[0.5] * 3, std=[0.25] * 3)
    torch.manual_seed(0)
    save_model(uri, create_model(config), config, {"recipe": {"name": "bench"}}, [])


def test_image() -> bytes:
    """A 256x256 PNG with smooth shapes, compressing like a real picture rather than noise."""
    y, x = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    disc = ((y - 100) ** 2 + (x - 150) ** 2 < 60**2)[..., None]
    image = np.stack([x, y, (x + y) // 2], axis=2).astype(np.uint8) // 2 + disc * np.array([120, 40, 0], np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def measure(call: Callable[[], Call], clients: int, requests: int, time_cap: float) -> tuple[list[float], float]:
    """`clients` threads share `requests` calls (fewer if `time_cap` seconds pass): latencies (ms) and wall time."""
    latencies: list[float] = []
    issued = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + time_cap

    def client() -> None:
        send = call()
        while True:
            with lock:
                if issued[0] >= requests or time.monotonic() > deadline:
                    return
                issued[0] += 1
            started = time.perf_counter()
            send()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed * 1000)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def summarise(clients: int, latencies: list[float], wall: float) -> dict:
    latencies = sorted(latencies)
    return {"clients": clients, "requests": len(latencies), "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
            "mean_ms": round(statistics.fmean(latencies), 2), "throughput_rps": round(len(latencies) / wall, 1)}


def in_process_call(predictor: Predictor, image: bytes, max_pixels: int) -> Call:
    def call() -> None:
        decoded = decode_image(image, max_pixels, predictor.config.in_channels)
        mask = predictor.segment(predictor.prepare([decoded]), [decoded.shape[:2]])[0]
        mask_png(mask, predictor.colours)

    return call


def served_call(endpoint: str, token: str, image: bytes) -> Call:
    client = InferenceClient(endpoint, token)

    def call() -> None:
        answer = client.send(image, "mask")
        if answer.status != 200:
            raise RuntimeError(f"{endpoint} answered {answer.status}: {answer.body[:300]!r}")

    return call


def interleaved(modes: dict[str, Callable[[], Call]], requests: int, time_cap: float) -> dict[str, list[dict]]:
    """Every mode at every level in short alternating slices, so a neighbour's load hits all modes alike.

    A slice is 2 requests per client (at least 10), so every client is busy throughout it.
    """
    for make_call in modes.values():
        warm = make_call()
        for _ in range(WARMUP):
            warm()
    results: dict[str, list[dict]] = {name: [] for name in modes}
    for clients in CLIENTS:
        size = max(10, 2 * clients)
        rounds = max(1, max(requests, 4 * clients) // size)
        collected = {name: ([], 0.0) for name in modes}
        load = os.getloadavg()[0]
        for _ in range(rounds):
            for name, make_call in modes.items():
                latencies, wall = measure(make_call, clients, size, time_cap / rounds)
                collected[name] = (collected[name][0] + latencies, collected[name][1] + wall)
        for name, (latencies, wall) in collected.items():
            load_1m = [round(load, 2), round(os.getloadavg()[0], 2)]
            results[name].append(summarise(clients, latencies, wall) | {"load_average_1m": load_1m})
    return results


def started_server(model_uri: str, serving: ServingSection, work: Path, stack: ExitStack) -> tuple[str, str]:
    """A TorchServe for `model_uri` packaged with `serving`, stopped when `stack` closes: (endpoint, key)."""
    archive = package(model_uri, str(work / "archive"), serving=serving)
    mar = Path(archive.uri) / archive.version / archive.manifest["mar"]
    server = stack.enter_context(TorchServe(mar, archive.manifest["name"], work / "run"))
    return server.endpoints.predictions, server.key()


def serving_machine() -> dict:
    from ts.version import __version__ as torchserve_version

    return machine() | {"torch_threads": torch.get_num_threads(), "torchserve": torchserve_version}


def section(results: dict) -> str:
    modes = list(results["runs"])
    header = "| clients | " + " | ".join(f"{m}: p50 / p99 ms, req/s" for m in modes) + " |"
    rows = [header, "|---:|" + "---|" * len(modes)]
    for i, clients in enumerate(CLIENTS):
        cells = [f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}, {r['throughput_rps']:.0f}"
                 for r in (results["runs"][m][i] for m in modes)]
        rows.append(f"| {clients} | " + " | ".join(cells) + " |")
    m = results["machine"]
    return "\n".join([
        "## Serving: TorchServe vs in-process (`bench/serving.py`)",
        "",
        f"{results['model']['name']} ({results['model']['parameters']:,} parameters), one {SIZE[0]}x{SIZE[1]} PNG in, "
        "a mask PNG out; the same decode, pre-processing, model and encoding on both sides. "
        f"{m['cores']} cores ({m['cpu']}), torch {m['torch']}, TorchServe {m['torchserve']}, "
        f"{results['requests_per_level']} requests per level and mode (at least 4 per client) in alternating "
        "slices of 2 per client; clients on the same machine. "
        f"1-minute load average before the run: {m['load_average_at_start'][0]} (other jobs share these cores). "
        f"Measured {results['date']}; raw numbers in `docs/results/serving.json`.",
        "",
        *rows,
        "",
        "p50 overhead of TorchServe over in-process at 1 client: "
        + "; ".join(f"{name}: {ms:+.1f} ms" for name, ms in results["overhead_p50_ms_1_client"].items()) + ".",
    ])


def headline(results: dict) -> list[tuple[str, str, str]]:
    one = {name: runs[0] for name, runs in results["runs"].items()}
    return [(f"serving p50 at 1 client, {name}", f"{r['p50_ms']:.1f} ms ({r['throughput_rps']:.0f} req/s)", "")
            for name, r in one.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model artifact URI (default: the quickstart U-Net at 256x256)")
    parser.add_argument("--requests", type=int, default=100, help="requests per concurrency level")
    parser.add_argument("--time-cap", type=float, default=40.0, help="seconds per level and mode at most")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        model_uri = args.model or str(work / "model")
        if not args.model:
            quickstart_model(model_uri)
        model, config, _ = load_model(model_uri)
        image = test_image()
        predictor = Predictor(model, config)
        max_pixels = ServingSection().max_pixels
        modes = {IN_PROCESS: lambda: in_process_call(predictor, image, max_pixels)}
        for i, (name, serving) in enumerate(SERVERS.items()):
            endpoint, token = started_server(model_uri, serving, work / f"server{i}", stack)
            modes[name] = lambda endpoint=endpoint, token=token: served_call(endpoint, token, image)
        results = {"date": now(), "machine": serving_machine(),
                   "model": {"uri": args.model or "quickstart U-Net (random weights)", "name": config.name,
                             "params": config.params, "parameters": count_parameters(model),
                             "input_size": list(config.input_size)},
                   "image_bytes": len(image), "requests_per_level": args.requests,
                   "runs": interleaved(modes, args.requests, args.time_cap)}
    baseline = results["runs"][IN_PROCESS][0]["p50_ms"]
    results["overhead_p50_ms_1_client"] = {name: round(results["runs"][name][0]["p50_ms"] - baseline, 2)
                                           for name in SERVERS}
    save("serving", results)
    print(section(results))


if __name__ == "__main__":
    main()
