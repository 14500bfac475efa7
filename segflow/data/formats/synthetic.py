"""Synthetic shapes: the embedded default dataset, so `segflow run` needs no download.

Each image has a textured background (class 0) and a few filled shapes; shape kind and colour
family both depend on the class, so a small network can learn them in a minute on a CPU.
Everything derives from `seed`: the same recipe always yields the same pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from segflow.config.recipe import ClassSpec
from segflow.data.base import Reader, Sample, SourceItem

SHAPES = ("ellipse", "rectangle", "triangle", "diamond")
BASE_COLOURS = np.array(
    [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
     (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40)],
    dtype=np.int32,
)


class SyntheticReader(Reader):
    needs_root = False

    def classes(self) -> list[ClassSpec]:
        names = ["background"] + [f"{SHAPES[(i - 1) % len(SHAPES)]}_{i}" for i in range(1, self.config.num_classes)]
        return [ClassSpec(name=n, colour=_palette(i)) for i, n in enumerate(names)]

    def scan(self) -> list[SourceItem]:
        return [SourceItem(id=f"synthetic-{i:05d}", group=f"synthetic-{i:05d}") for i in range(self.config.num_images)]

    def load(self, item: SourceItem) -> Sample:
        index = int(item.id.rsplit("-", 1)[1])
        rng = np.random.default_rng([self.config.seed, index])
        height, width = self.config.image_size
        image = _background(rng, height, width)
        mask = Image.new("L", (width, height), 0)
        canvas = Image.fromarray(image)
        for _ in range(int(rng.integers(1, 4))):
            cls = int(rng.integers(1, self.config.num_classes))
            box = _box(rng, height, width)
            colour = tuple(int(v) for v in np.clip(BASE_COLOURS[(cls - 1) % len(BASE_COLOURS)] + rng.integers(-30, 31, 3), 0, 255))
            _draw(ImageDraw.Draw(canvas), SHAPES[(cls - 1) % len(SHAPES)], box, colour)
            _draw(ImageDraw.Draw(mask), SHAPES[(cls - 1) % len(SHAPES)], box, cls)
        return Sample(image=np.asarray(canvas), target=np.asarray(mask))


def _palette(index: int) -> str:
    if index == 0:
        return "#000000"
    r, g, b = BASE_COLOURS[(index - 1) % len(BASE_COLOURS)]
    return f"#{r:02X}{g:02X}{b:02X}"


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.integers(60, 140)
    noise = rng.normal(0, 12, (height, width, 1))
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = 10 * np.sin(xx * rng.uniform(0.05, 0.3) + yy * rng.uniform(0.05, 0.3))[..., None]
    return np.clip(base + noise + stripes, 0, 255).repeat(3, axis=2).astype(np.uint8)


def _box(rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    size = int(rng.integers(min(height, width) // 6, min(height, width) // 2))
    x0 = int(rng.integers(0, width - size))
    y0 = int(rng.integers(0, height - size))
    return x0, y0, x0 + size, y0 + size


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    if shape == "ellipse":
        draw.ellipse(box, fill=fill)
    elif shape == "rectangle":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    else:
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
