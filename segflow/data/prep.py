"""`segflow prep`: a dataset as downloaded -> a versioned, validated dataset artifact.

Steps: find the raw folder (local, or copied from object storage into the cache), scan it
(format reader), hash every source file, split deterministically, load and check every item,
cut it into fixed-size samples, write shards and a manifest into a local staging folder, then
publish that folder to the store as one version. Problems with individual files are collected
and reported together; if there is any, nothing is published.

The version id is the content hash. The input hash (sources + data recipe + prep version)
lets a second run with the same inputs reuse the published version instead of redoing it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bars

import segflow
from segflow.config.recipe import Recipe
from segflow.data.base import Reader, Sample, SourceItem
from segflow.data.formats import make_reader
from segflow.data.layout import apply_layout
from segflow.data.manifest import ColourPolicyReport, Manifest, ShardInfo, SplitStats
from segflow.data.remote import locate_raw
from segflow.data.split import SPLITS, assign_splits
from segflow.errors import DataError
from segflow.progress import TERMINAL, Progress
from segflow.store import open_store, publish_version, read_manifest, sha256_file

# Bump when prep writes different samples for the same inputs (invalidates reuse).
PREP_VERSION = 1
SHARD_BYTES = 64 << 20
MAX_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class PrepResult:
    uri: str
    version: str
    manifest: Manifest
    reused: bool


def prep(recipe: Recipe, data: str | Path | None, out_uri: str, *, force: bool = False,
         progress: Progress = TERMINAL) -> PrepResult:
    """Prepare `recipe`'s dataset found at `data` into the store at `out_uri`.

    `data` (default: the recipe's data.path) is the folder as distributed, or the same folder
    uploaded to object storage (s3:// or minio:// URI), which is downloaded into the cache first.
    """
    store = open_store(out_uri)
    with progress.bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn()) as bars:
        raw = locate_raw(data or recipe.data.path, bars)
        root = raw.root if raw else None
        reader = make_reader(recipe.data, root)
        items = reader.scan()
        sources = _hash_sources(reader.sources(items), root, bars)
        input_hash = _input_hash(recipe, sources)
        if not force and (previous := _reusable(store, input_hash)):
            return PrepResult(store.uri, previous[0], previous[1], reused=True)
        splits = assign_splits(items, recipe.data.split)
        with tempfile.TemporaryDirectory(prefix="segflow-prep-") as tmp:
            manifest = _build(recipe, reader, splits, Path(tmp), bars)
            manifest = manifest.model_copy(update={
                "sources": sources,
                "source_root": raw.origin if raw else "",
                "input_hash": input_hash,
            })
            manifest.dataset_hash = manifest.content_hash()
            version = manifest.dataset_hash[:16]
            (Path(tmp) / "manifest.json").write_text(manifest.model_dump_json(indent=2))
            publish_version(store, Path(tmp), version)
    return PrepResult(store.uri, version, manifest, reused=False)


def _hash_sources(paths: list[Path], root: Path | None, bars: Bars) -> dict[str, str]:
    task = bars.add_task("hashing sources", total=len(paths))
    hashes = {}
    for path in paths:
        key = path.relative_to(root).as_posix() if root else path.as_posix()
        hashes[key] = sha256_file(path)
        bars.advance(task)
    return hashes


def _input_hash(recipe: Recipe, sources: dict[str, str]) -> str:
    payload = {
        "data": recipe.data.model_dump(mode="json", exclude={"path"}),
        "sources": sources,
        "prep_version": PREP_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _reusable(store, input_hash: str) -> tuple[str, Manifest] | None:
    try:
        version, raw = read_manifest(store)
    except segflow.errors.StoreError:
        return None
    manifest = Manifest.model_validate(raw)
    return (version, manifest) if manifest.input_hash == input_hash else None


def _build(recipe: Recipe, reader: Reader, splits: dict[str, list[SourceItem]], out: Path,
           bars: Bars) -> Manifest:
    classes = reader.classes()
    writer = _ShardWriter(out / "shards")
    stats: dict[str, SplitStats] = {}
    problems: list[str] = []
    sample_shape = None
    task = bars.add_task("preparing", total=sum(len(v) for v in splits.values()))
    for split in SPLITS:
        counts = np.zeros(256, dtype=np.int64)
        samples = 0
        for item in splits[split]:
            try:
                for sample in apply_layout(recipe.data.layout, reader.load(item), item.id, sample_shape):
                    sample_shape = sample_shape or sample.image.shape
                    counts += _class_counts(sample, reader.task)
                    writer.add(split, sample)
                    samples += 1
            except DataError as exc:
                problems.append(str(exc))
            bars.advance(task)
        writer.flush(split)
        if splits[split]:
            stats[split] = SplitStats(
                sources=len(splits[split]),
                samples=samples,
                class_counts=[int(c) for c in counts[: len(classes)]],
                ignored=int(counts[recipe.data.ignore_index]) if reader.task == "segmentation" else 0,
            )
    _raise_problems(problems)
    if "train" not in stats or stats["train"].samples == 0:
        raise DataError("the train split is empty after prep; add data or lower the split fractions")
    return Manifest(
        name=recipe.name,
        format=recipe.data.format,
        task=reader.task,
        classes=classes,
        ignore_index=recipe.data.ignore_index,
        sample_shape=tuple(sample_shape),
        target_unit="pixels" if reader.task == "segmentation" else "samples",
        splits=stats,
        shards=writer.shards,
        ignored_colours=ColourPolicyReport(pixels=reader.ignored.pixels, files=reader.ignored.files),
        unknown_colours=ColourPolicyReport(pixels=reader.unknown.pixels, files=reader.unknown.files),
        sources={},
        source_root="",
        input_hash="",
        prep_version=PREP_VERSION,
        segflow_version=segflow.__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        recipe=recipe.model_dump(mode="json"),
    )


def _class_counts(sample: Sample, task: str) -> np.ndarray:
    if task == "classification":
        counts = np.zeros(256, dtype=np.int64)
        counts[int(sample.target)] = 1
        return counts
    return np.bincount(np.asarray(sample.target).ravel(), minlength=256)


def _raise_problems(problems: list[str]) -> None:
    if not problems:
        return
    listed = "\n  - ".join(problems[:MAX_LISTED_PROBLEMS])
    more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
    raise DataError(f"{len(problems)} item(s) could not be prepared; nothing was written:\n  - {listed}{more}")


class _ShardWriter:
    """Buffers samples per split and writes them as pairs of .npy files of about SHARD_BYTES."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True)
        self.buffers: dict[str, list[Sample]] = {}
        self.sizes: dict[str, int] = {}
        self.shards: dict[str, list[ShardInfo]] = {}

    def add(self, split: str, sample: Sample) -> None:
        self.buffers.setdefault(split, []).append(sample)
        self.sizes[split] = self.sizes.get(split, 0) + sample.image.nbytes
        if self.sizes[split] >= SHARD_BYTES:
            self.flush(split)

    def flush(self, split: str) -> None:
        buffer = self.buffers.pop(split, [])
        self.sizes[split] = 0
        if not buffer:
            return
        index = len(self.shards.setdefault(split, []))
        stem = f"{split}-{index:05d}"
        images = np.stack([s.image for s in buffer]).astype(np.uint8)
        targets = np.stack([np.asarray(s.target, dtype=np.uint8) for s in buffer])
        images_path = self.folder / f"{stem}.images.npy"
        targets_path = self.folder / f"{stem}.targets.npy"
        np.save(images_path, images)
        np.save(targets_path, targets)
        self.shards[split].append(ShardInfo(
            images=f"shards/{images_path.name}",
            targets=f"shards/{targets_path.name}",
            count=len(buffer),
            images_sha256=sha256_file(images_path),
            targets_sha256=sha256_file(targets_path),
        ))
