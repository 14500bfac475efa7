"""Raw datasets as their authors distribute them, tiny, and uploaded to S3 the way a user does (`mc cp`).

Shared by the tests of prep from object storage (tests/segflow/data) and of the prep component
(tests/pipelines).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from minio import Minio
from PIL import Image

from segflow.config import parse_recipe
from segflow.config.recipe import Recipe
from support.s3server import S3Server

AERIAL_COLOURS = [(0x3C, 0x10, 0x98), (0x84, 0x29, 0xF6), (0x6E, 0xC1, 0xE4), (0xFE, 0xDD, 0x3A), (0xE2, 0xA9, 0x29)]


def write_aerial(root: Path, tiles: int = 2, parts: int = 3, size: tuple[int, int] = (150, 130)) -> Path:
    """Dubai aerial's layout (`Semantic segmentation dataset/Tile N/{images/*.jpg,masks/*.png}` and the shipped,
    unread classes.json): noisy images, masks of class colours in 10-pixel blocks."""
    rng = np.random.default_rng(7)
    top = root / "Semantic segmentation dataset"
    for tile in range(1, tiles + 1):
        for folder in ("images", "masks"):
            (top / f"Tile {tile}" / folder).mkdir(parents=True)
        for part in range(1, parts + 1):
            name = f"image_part_{part:03d}"
            image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(image).save(top / f"Tile {tile}" / "images" / f"{name}.jpg")
            blocks = rng.integers(0, len(AERIAL_COLOURS), (size[1] // 10 + 1, size[0] // 10 + 1))
            indices = np.kron(blocks, np.ones((10, 10), int))[: size[1], : size[0]]
            Image.fromarray(np.array(AERIAL_COLOURS, np.uint8)[indices]).save(
                top / f"Tile {tile}" / "masks" / f"{name}.png")
    (top / "classes.json").write_text('{"classes": []}')
    return root


def aerial_recipe() -> Recipe:
    """An aerial recipe cutting 64-pixel patches, so the tiny tiles give a few samples each."""
    return parse_recipe({"name": "aerial-t", "model": {"name": "unet"},
                         "data": {"format": "aerial", "layout": {"kind": "patch", "size": 64},
                                  "split": {"val_fraction": 0.34, "by": "group"}}})


def s3_client(server: S3Server, access_key: str | None = None, secret_key: str | None = None) -> Minio:
    return Minio(server.address, access_key=access_key or server.access_key,
                 secret_key=secret_key or server.secret_key, secure=False)


def upload_folder(server: S3Server, folder: Path, bucket: str, prefix: str) -> None:
    """Each file as one object under `prefix`, with no segflow metadata, as `mc cp --recursive` leaves them."""
    client = s3_client(server)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.fput_object(bucket, f"{prefix}/{path.relative_to(folder).as_posix()}", str(path))
