"""report.md: the "baseline performance" report users hand in, linking every figure."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

from segflow.evaluate.predict import Evaluation
from segflow.layout import EVAL, RUN, EvalLayout
from segflow.models import ModelConfig

HEADLINE = {
    "segmentation": (("miou", "mean IoU"), ("mean_dice", "mean Dice"), ("accuracy", "pixel accuracy"),
                     ("mean_precision", "mean precision"), ("mean_recall", "mean recall")),
    "classification": (("accuracy", "accuracy"), ("top5", "top-5 accuracy"),
                       ("mean_precision", "mean precision"), ("mean_recall", "mean recall")),
}
CAPTIONS = {
    "samples": "10 validation images: image, ground truth, prediction",
    "loss": "Train and validation loss per epoch",
    "metric": "Validation metric per epoch",
    "precision_recall": "Per-class precision and recall",
    "pr_curve": "Precision-recall curve",
    "confusion": "Confusion matrix (rows: true class, normalised)",
}


SUMMARY_FIGURES = ("samples", "loss", "precision_recall")  # what another report shows of a published model


def render(title: str, evaluation: Evaluation, config: ModelConfig, card: dict, figures: dict[str, str],
           history: list[dict], figure_dir: str = EVAL.figures) -> str:
    lines = [f"# {title}", ""]
    lines += _about(evaluation, config, card)
    lines += ["## Results", "", "| metric | value |", "|---|---|"]
    lines += [f"| {label} | {_fmt(evaluation.metrics[key])} |"
              for key, label in HEADLINE[config.task] if key in evaluation.metrics]
    lines += ["", "## Per class", "", _per_class_table(evaluation, config), ""]
    for name, file in figures.items():
        lines += [f"### {CAPTIONS[name]}", "", f"![{CAPTIONS[name]}]({figure_dir}/{file})", ""]
    if history:
        lines += ["## Training history", "", _history_table(history), ""]
    return "\n".join(lines)


def figure_links(figures: dict[str, str], folder: EvalLayout = RUN.eval) -> str:
    """The link to a published model's report.md and its key figures (`figures` as `write_evaluation` drew them).

    A search, a distillation and an architecture search each end in a model evaluated in `folder`
    of their run; their own reports show it with this one block, written from where they sit.
    """
    lines = [f"Full evaluation: [{folder.report}]({folder.report}).", ""]
    for name in SUMMARY_FIGURES:
        if name in figures:
            lines += [f"![{CAPTIONS[name]}]({folder.figure(figures[name])})", ""]
    return "\n".join(lines)


def _about(evaluation: Evaluation, config: ModelConfig, card: dict) -> list[str]:
    rows = [("model", f"{config.name} ({card.get('parameters', 0):,} parameters)"),
            ("model version", card.get("version", "")),
            ("dataset", f"{card.get('dataset', {}).get('uri', '')} @ {card.get('dataset', {}).get('version', '')}"),
            ("split", f"{evaluation.split} ({evaluation.samples:,} samples)"),
            ("input", f"{config.in_channels}x{config.input_size[0]}x{config.input_size[1]}")]
    latency = card.get("cpu_latency_ms")
    if latency:
        rows.append(("CPU latency (batch 1)", f"p50 {latency['p50']:.1f} ms, p90 {latency['p90']:.1f} ms "
                                              f"({latency['threads']} threads)"))
    if card.get("teacher"):
        rows.append(("teacher", card["teacher"]))
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]


def _per_class_table(evaluation: Evaluation, config: ModelConfig) -> str:
    per_class = evaluation.metrics["per_class"]
    columns = [c for c in ("precision", "recall", "iou", "f1") if c in per_class]
    header = "| class | " + " | ".join("Dice" if c == "f1" and config.task == "segmentation" else c for c in columns) + " |"
    rows = [header, "|---" * (len(columns) + 1) + "|"]
    for i, cls in enumerate(config.classes):
        rows.append(f"| {cls.name} | " + " | ".join(_fmt(per_class[c][i]) for c in columns) + " |")
    return "\n".join(rows)


def _history_table(history: list[dict]) -> str:
    keys = [k for k in ("train_loss", "val_loss", "val_miou", "val_mean_dice", "val_accuracy", "lr") if k in history[0]]
    rows = ["| epoch | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    rows += [f"| {r['epoch']} | " + " | ".join(_fmt(r.get(k, math.nan)) for k in keys) + " |" for r in history]
    return "\n".join(rows)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}"


def to_html(report_md: str, figures_dir: Path, root: Path | None = None) -> str:
    """One self-contained HTML page (figures inlined as data URIs): what the Kubeflow UI shows.

    A figure is looked up by name in `figures_dir`, else by its relative path from `root` (the
    folder of a search or distillation report whose own figures sit beside it).
    """
    import markdown

    def inline(match: re.Match) -> str:
        path = figures_dir / Path(match.group(2)).name
        if not path.is_file() and root is not None:
            path = root / match.group(2)
        data = base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    body = markdown.markdown(re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", inline, report_md), extensions=["tables"])
    style = ("body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{body}</body></html>"
