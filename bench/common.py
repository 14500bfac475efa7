"""What every benchmark shares: the machine it ran on, its results file, and its section of the docs.

Each bench/NAME.py saves docs/results/NAME.json and then regenerates docs/benchmarks.md from
every results file there (bench/report.py), so the page always shows the latest run of each
benchmark, and a benchmark run alone does not drop the others' figures.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def machine() -> dict:
    """Hardware and versions, and how busy the machine was when the benchmark started."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    found = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
             "quantized_engine": torch.backends.quantized.engine,
             "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
    return found


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def save(name: str, results: dict) -> Path:
    """docs/results/NAME.json, then docs/benchmarks.md regenerated with it.

    Results made of "cases" keep the cases an earlier run measured and this one did not
    (`--cases fashion` leaves the aerial figure in place); each case records its own date.
    """
    from report import write_benchmarks  # bench/ is on sys.path when a bench runs as a script

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    if "cases" in results and path.is_file():
        results["cases"] = json.loads(path.read_text()).get("cases", {}) | results["cases"]
    path.write_text(json.dumps(results, indent=2))
    write_benchmarks()
    return path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}-benchmark:begin -->", f"<!-- {name}-benchmark:end -->"


def write_section(path: Path, name: str, section: str) -> None:
    """Replace NAME's marked section of a markdown file (or append it), leaving the rest alone."""
    begin, end = markers(name)
    text = path.read_text() if path.is_file() else ""
    block = f"{begin}\n{section.strip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
