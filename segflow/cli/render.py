"""Rich tables for what the CLI shows: recipes, dataset manifests, versions."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from segflow.data.manifest import Manifest
from segflow.store import VersionInfo


def recipes_table(recipes: dict[str, str]) -> Table:
    table = Table(title="packaged recipes (configs/)")
    table.add_column("recipe", style="bold")
    table.add_column("description")
    for name, description in recipes.items():
        table.add_row(name, description)
    return table


def manifest_tables(manifest: Manifest, uri: str, version: str) -> list[Table]:
    summary = Table(title=f"dataset {manifest.name} @ {uri}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    rows = [
        ("version", version or "(this folder)"),
        ("dataset hash", manifest.dataset_hash),
        ("format / task", f"{manifest.format} / {manifest.task}"),
        ("classes", str(manifest.num_classes)),
        ("sample shape", "x".join(str(d) for d in manifest.sample_shape)),
        ("source files", str(len(manifest.sources))),
        ("created", manifest.created_at),
    ]
    for key, value in rows:
        summary.add_row(key, value)

    splits = list(manifest.splits)
    counts = Table(title="splits")
    for column in ("split", "source items", "samples", "ignored pixels" if manifest.task == "segmentation" else ""):
        if column:
            counts.add_column(column, justify="right" if column != "split" else "left")
    for split, stats in manifest.splits.items():
        row = [split, f"{stats.sources:,}", f"{stats.samples:,}"]
        if manifest.task == "segmentation":
            row.append(f"{stats.ignored:,}")
        counts.add_row(*row)

    unit = "pixel" if manifest.target_unit == "pixels" else "sample"
    fractions = Table(title=f"class {unit} fractions")
    fractions.add_column("#", justify="right")
    fractions.add_column("class")
    for split in splits:
        fractions.add_column(split, justify="right")
    per_split = {split: manifest.splits[split].fractions() for split in splits}
    for index, cls in enumerate(manifest.classes):
        name = Text(cls.name)
        if cls.colour:
            name = Text("■ ", style=cls.colour) + Text(f"{cls.name} {cls.colour}")
        fractions.add_row(str(index), name, *(f"{per_split[s][index]:.2%}" for s in splits))
    tables = [summary, counts, fractions]

    policy = _policy_table(manifest)
    if policy is not None:
        tables.append(policy)
    return tables


def _policy_table(manifest: Manifest) -> Table | None:
    rows = [("ignored (ignore_index)", colour, pixels, manifest.ignored_colours.files[colour])
            for colour, pixels in manifest.ignored_colours.pixels.items()]
    rows += [("unknown (ignored by policy)", colour, pixels, manifest.unknown_colours.files[colour])
             for colour, pixels in manifest.unknown_colours.pixels.items()]
    if not rows:
        return None
    table = Table(title="mask colours that are not classes")
    for column in ("policy", "colour", "pixels", "files"):
        table.add_column(column)
    for policy, colour, pixels, files in rows:
        table.add_row(policy, colour, f"{pixels:,}", str(files))
    return table


def versions_table(uri: str, versions: list[VersionInfo]) -> Table:
    table = Table(title=f"versions @ {uri}")
    for column in ("version", "created", "latest"):
        table.add_column(column)
    for info in versions:
        table.add_row(info.version, info.created.isoformat(timespec="seconds"), "yes" if info.is_latest else "")
    return table
