"""What every on-disk dataset format provides to prep: its classes, its items, and loading.

A reader knows one distribution format (the folder layout users actually download). It does
not split, resize or write anything; prep does that the same way for every format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segflow.config.recipe import FORMATS, ClassSpec, Task
from segflow.errors import DataError

# Refuse absurd images early (PIL's own bomb limit is a warning up to 2x this).
Image.MAX_IMAGE_PIXELS = 300_000_000


@dataclass(frozen=True)
class SourceItem:
    """One labelled example as found on disk, before any resizing or patching.

    `group` keeps related items on one side of a split (the views of one car, the patches
    of one image); `split` is set when the distribution fixes it (Fashion-MNIST's test set).
    """

    id: str
    group: str
    files: tuple[Path, ...] = ()
    split: str | None = None


@dataclass
class Sample:
    """A loaded item: an HxWxC uint8 image and its target (HxW uint8 class map, or a label)."""

    image: np.ndarray
    target: np.ndarray | int


@dataclass
class ColourCounts:
    """Pixels whose mask colour is not a class colour, by colour: what the policy did with them."""

    pixels: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)

    def add(self, colour: str, count: int) -> None:
        self.pixels[colour] = self.pixels.get(colour, 0) + count
        self.files[colour] = self.files.get(colour, 0) + 1


class Reader(ABC):
    """Base class of a dataset format; subclasses are named in segflow.config.recipe.FORMATS."""

    needs_root = True  # False: the reader makes its data up and needs no dataset folder

    def __init__(self, config, root: Path | None):
        self.config = config
        self.root = root
        self.ignored = ColourCounts()  # colours mapped to ignore_index by the policy
        self.unknown = ColourCounts()  # colours the recipe does not know at all

    @property
    def task(self) -> Task:
        """The task of this format's data, as its FORMATS entry says."""
        return FORMATS[self.config.format].task

    @abstractmethod
    def classes(self) -> list[ClassSpec]:
        """The classes, index i = class i (the order masks are encoded in)."""

    @abstractmethod
    def scan(self) -> list[SourceItem]:
        """Find every item; fail on a missing folder, an image without mask or no items."""

    @abstractmethod
    def load(self, item: SourceItem) -> Sample:
        """Read one item, checking it (decodable, mask size matches, colours known)."""

    def sources(self, items: list[SourceItem]) -> list[Path]:
        """Every source file behind the items, each once (their sha256 goes into the manifest)."""
        return sorted({f for item in items for f in item.files})

    def iter_samples(self, items: list[SourceItem]) -> Iterator[tuple[SourceItem, Sample]]:
        for item in items:
            yield item, self.load(item)

    def require_dir(self, path: Path, what: str) -> Path:
        if not path.is_dir():
            raise DataError(
                f"{what} folder {path} does not exist; point --data (or data.path) at the "
                f"dataset root as distributed ({self.layout_hint()})"
            )
        return path

    def layout_hint(self) -> str:
        return "see docs/data.md for the expected layout"

    def paired(self, item: SourceItem, decode_mask: Callable[[Path], np.ndarray]) -> Sample:
        """The image and decoded mask of an (image, mask) item, refused unless their sizes match."""
        image_path, mask_path = item.files
        image = read_rgb(image_path)
        mask = decode_mask(mask_path)
        check_same_size(image, mask, image_path, mask_path)
        return Sample(image=image, target=mask)

    def colour_mask(self, path: Path, ignore_colours: list[str], unknown_policy: str, fix: str) -> np.ndarray:
        """decode_colour_mask with this reader's classes, ignore_index and colour counters."""
        return decode_colour_mask(path, self.classes(), ignore_index=self.config.ignore_index,
                                  ignore_colours=ignore_colours, unknown_policy=unknown_policy,
                                  ignored=self.ignored, unknown=self.unknown, fix=fix)

    def checked(self, items: list[SourceItem], unpaired: list[str], where: Path, fix: str) -> list[SourceItem]:
        """`items`, unless some images had no mask (`unpaired`, listed with `fix`) or none were found."""
        if unpaired:
            raise DataError(f"{len(unpaired)} image(s) have no mask: {'; '.join(unpaired[:5])}; {fix}")
        if not items:
            raise DataError(f"no images found in {where}; expected {self.layout_hint()}")
        return items


@contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """Open and fully decode an image (truncated files fail here), with errors that name the file."""
    try:
        with Image.open(path) as img:
            img.load()
            yield img
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path} is too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path} is not a readable image ({exc}); re-download it or remove it") from None


def read_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8."""
    with open_image(path) as img:
        return np.asarray(img.convert("RGB"))


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> HxW int32 0xRRGGBB, so colours compare as single numbers."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def hex_to_int(colour: str) -> int:
    return int(colour.lstrip("#"), 16)


def int_to_hex(value: int) -> str:
    return f"#{int(value):06X}"


def decode_colour_mask(
    path: Path,
    classes: list[ClassSpec],
    *,
    ignore_index: int,
    ignore_colours: list[str],
    unknown_policy: str,
    ignored: ColourCounts,
    unknown: ColourCounts,
    fix: str,
) -> np.ndarray:
    """Map an RGB (or palette) mask to class indices by exact colour.

    Colours in `ignore_colours` become `ignore_index` and are counted. Any other colour is
    unknown: with policy "error" the file is refused, naming the colours; with "ignore" it
    becomes `ignore_index` and is counted separately. `fix` tells the user what to change,
    in the terms of their format's recipe section.
    """
    packed = pack_rgb(read_rgb(path))
    colours, inverse = np.unique(packed, return_inverse=True)
    lookup = np.full(len(colours), ignore_index, dtype=np.uint8)
    class_of = {hex_to_int(c.colour): i for i, c in enumerate(classes) if c.colour}
    ignore_set = {hex_to_int(c) for c in ignore_colours}
    counts = np.bincount(inverse.ravel(), minlength=len(colours))
    strangers = []
    for j, colour in enumerate(colours):
        if int(colour) in class_of:
            lookup[j] = class_of[int(colour)]
        elif int(colour) in ignore_set:
            ignored.add(int_to_hex(colour), int(counts[j]))
        else:
            strangers.append((int_to_hex(colour), int(counts[j])))
    if strangers and unknown_policy == "error":
        listed = ", ".join(f"{c} ({n} px)" for c, n in strangers[:8])
        raise DataError(f"{path} has mask colours that are not class colours: {listed}; {fix}")
    for colour, count in strangers:
        unknown.add(colour, count)
    return lookup[inverse].reshape(packed.shape)


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    if image.shape[:2] != mask.shape[:2]:
        ih, iw = image.shape[:2]
        mh, mw = mask.shape[:2]
        raise DataError(
            f"mask {mask_path} is {mw}x{mh} but its image {image_path} is {iw}x{ih}; "
            "re-export the mask at the image's size or remove the pair"
        )
