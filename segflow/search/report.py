"""hyperparameter-optimization.md: every trial, the best configuration, and the figures behind it.

search-figures/trials.png      the search metric per trial (best epoch) and per epoch for every trial
search-figures/parameters.png  each searched parameter against the metric
The best model's own figures (10 validation images, loss curves, precision and recall) are the ones
`publish` wrote into the run's evaluation folder, linked by `figure_links`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from segflow.config.recipe import ChoiceParam, Recipe  # noqa: E402
from segflow.evaluate import DPI, figure_links  # noqa: E402
from segflow.evaluate import metrics as metric_fns  # noqa: E402
from segflow.search.trial import recipe_key  # noqa: E402

FIGURES = "search-figures"


def write(recipe: Recipe, trials, best, history: list[dict], model, path: Path, *, wall_time_s: float,
          web_ui: str | None) -> str:
    """Draw the figures next to `path` and write the report there; returns its text."""
    s = recipe.search
    figures = path.parent / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    _trials_figure(trials, best, s.metric, s.mode, figures / "trials.png")
    _parameters_figure(trials, recipe, figures / "parameters.png")
    scheduler = f", scheduler {s.scheduler}" if s.scheduler else ""
    metrics = metric_fns.scalars(model.evaluation.evaluation.metrics)
    lines = [
        f"# Hyperparameter optimization: {recipe.name}",
        "",
        f"Backend **{s.backend}**, algorithm **{s.algo}**{scheduler}; {len(trials)} trials of up to "
        f"{s.max_epochs} epoch(s), {s.concurrency} at a time; objective: {s.mode} `{s.metric}` "
        f"(best epoch of each trial). Wall time {wall_time_s:.0f} s."
        + (f" NNI web UI while it ran: {web_ui}." if web_ui else ""),
        "",
        "## Best configuration",
        "",
        f"Trial `{best.name}`: {s.metric} = {_fmt(best.best(s.mode))}",
        "",
        "| parameter | recipe key | value |",
        "|---|---|---|",
        *[f"| {name} | `{recipe_key(name)}` | {_fmt(value)} |" for name, value in best.params.items()],
        "",
        f"Its best epoch is published as model `{model.model_uri}` (version {model.model_version}); on the "
        f"{model.evaluation.evaluation.split} split: "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items() if k.startswith(("miou", "mean_dice", "accuracy",
                                                                                   "mean_precision", "mean_recall")))
        + ".",
        "",
        "## Trials",
        "",
        "| trial | " + " | ".join(best.params) + f" | {s.metric} per epoch | best | status |",
        "|---|" + "---|" * len(best.params) + "---|---|---|",
        *[f"| {t.name}{' **best**' if t is best else ''} | " + " | ".join(_fmt(t.params.get(n)) for n in best.params)
          + f" | {', '.join(_fmt(v) for v in t.curve)} | {_fmt(t.best(s.mode))} | {t.status} |" for t in trials],
        "",
        *[f"Trial `{t.name}` failed: {t.error}\n" for t in trials if t.error],
        f"![{s.metric} per trial]({FIGURES}/trials.png)",
        "",
        f"![each parameter against {s.metric}]({FIGURES}/parameters.png)",
        "",
        "## The best model",
        "",
        figure_links(model.evaluation.figures),
    ]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def _trials_figure(trials, best, metric: str, mode: str, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    values = [t.best(mode) for t in trials]
    colours = ["tab:orange" if t is best else "tab:blue" for t in trials]
    left.bar(range(1, len(trials) + 1), [0 if math.isnan(v) else v for v in values], color=colours)
    left.set_xlabel("trial (in start order; best in orange)")
    left.set_ylabel(f"{metric} (best epoch)")
    for trial in sorted(trials, key=lambda t: t is best):  # the best drawn last, on top
        right.plot(range(1, len(trial.curve) + 1), trial.curve, marker="o", alpha=1 if trial is best else 0.5,
                   color="tab:orange" if trial is best else "tab:blue", linewidth=2.5 if trial is best else 1)
    left.xaxis.get_major_locator().set_params(integer=True)
    right.xaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel("epoch")
    right.set_ylabel(metric)
    right.set_title("every trial, per epoch (stopped trials end early)", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _parameters_figure(trials, recipe: Recipe, path: Path) -> None:
    space, metric, mode = recipe.search.space, recipe.search.metric, recipe.search.mode
    fig, axes = plt.subplots(1, len(space), figsize=(4 * len(space), 3.5), squeeze=False)
    for ax, (name, param) in zip(axes[0], space.items(), strict=True):
        xs = [t.params.get(name) for t in trials]
        ys = [t.best(mode) for t in trials]
        if isinstance(param, ChoiceParam):
            labels = [str(v) for v in param.values]
            ax.scatter([labels.index(str(x)) for x in xs], ys)
            ax.set_xticks(range(len(labels)), labels)
        else:
            ax.scatter(xs, ys)
            if param.type == "loguniform":
                ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
