"""Bytes in, bytes out: image decoding that a public endpoint can afford, and the answer encodings.

Everything a client sends passes through `decode_image` before a pixel reaches the model. Any
input it cannot turn into an 8-bit image of the model's channel count becomes a `RejectedInput`
carrying an HTTP 4xx status and a short reason (the label of the rejected-requests metric), so
a bad request costs one answer, never a worker. The pixel limit is checked on the header, before
decoding, which is what stops decompression bombs (a few KB that inflate to gigabytes).

The encoders build what the handler returns: a palette PNG of class indices, a JSON summary
(per-class pixels, fractions, boxes, optional COCO RLE), an overlay and a cutout, and the
legend (colour and pixel fraction per class) that the handler sends beside an image answer.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from segflow.data.palette import colourise
from segflow.errors import ServingError

# Signatures of the formats served; anything else is refused before Pillow guesses at it.
SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "TIFF": "image/tiff"}
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
PNG_LEVEL = 1  # fast deflate: answers are lossless either way, and latency matters more than bytes
OVERLAY_ALPHA = 0.5


class RejectedInput(ServingError):
    """A request the server refuses: `status` is its HTTP 4xx code, `reason` a short metric label."""

    def __init__(self, reason: str, message: str, status: int = 400):
        super().__init__(message)
        self.reason = reason
        self.status = status

    def as_json(self) -> dict:
        return {"code": self.status, "type": "RejectedInput", "reason": self.reason, "message": str(self)}


def image_format(data: bytes) -> str | None:
    """PNG, JPEG, WEBP or TIFF from the first bytes, or None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((kind for magic, kind in SIGNATURES.items() if data.startswith(magic)), None)


def decode_image(data: bytes, max_pixels: int, channels: int) -> np.ndarray:
    """HxWxC uint8 (C = `channels`) from encoded bytes, or RejectedInput saying what is wrong."""
    if not data:
        raise RejectedInput("empty", "the request has no image bytes; send a PNG, JPEG, WebP or TIFF image as the body")
    kind = image_format(data)
    if kind is None:
        raise RejectedInput("not_an_image", f"the body ({len(data)} bytes starting {data[:8]!r}) is not a PNG, "
                            "JPEG, WebP or TIFF image; send one of those", status=415)
    image = _open(data, kind, max_pixels)
    return _to_array(_eight_bit(image), channels)


def _open(data: bytes, kind: str, max_pixels: int) -> Image.Image:
    """Read the header, check the pixel count, then decode: a bomb is refused before it inflates."""
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit: refused while opening
        raise RejectedInput("too_many_pixels", f"the {kind} image is too large ({exc}); this server accepts at most "
                            f"{max_pixels:,} pixels; downscale it first", status=413) from None
    except UnidentifiedImageError:
        raise RejectedInput("corrupt", f"the body starts like a {kind} image but its header is corrupt; "
                            "send an intact image") from None
    except Exception as exc:  # untrusted bytes: any parser error is the client's problem, not the worker's
        raise RejectedInput("corrupt", f"the {kind} header cannot be read ({exc}); send an intact image") from None
    width, height = image.size
    if width * height > max_pixels:
        raise RejectedInput("too_many_pixels", f"the {kind} image has {width}x{height} = {width * height:,} pixels, "
                            f"over this server's limit of {max_pixels:,}; downscale it first", status=413)
    try:
        image.load()
    except Exception as exc:  # truncated or corrupt pixel data; Pillow raises OSError, SyntaxError, ValueError...
        raise RejectedInput("truncated", f"the {kind} image data is truncated or corrupt ({exc}); "
                            "send the whole file") from None
    return image


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled (not clipped) to 8 bits; float images refused: their range is unknown."""
    if image.mode in SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise RejectedInput("unsupported_mode", f"the image is 32-bit integer (values {values.min()}.."
                                f"{values.max()}); send 8- or 16-bit pixels", status=415)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")
    if image.mode == "F":
        raise RejectedInput("unsupported_mode", "the image has floating-point pixels, whose range is unknown; "
                            "send 8- or 16-bit pixels", status=415)
    return image


def _to_array(image: Image.Image, channels: int) -> np.ndarray:
    """Palette, CMYK, YCbCr, greyscale and alpha images converted to the model's channels."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # keeps a palette's transparency until the final conversion
    try:
        converted = image.convert(CHANNEL_MODES[channels])
    except (ValueError, OSError, TypeError) as exc:  # modes Pillow reads but cannot convert
        raise RejectedInput("unsupported_mode", f"images in mode {image.mode} cannot be converted to "
                            f"{CHANNEL_MODES[channels]} ({exc}); send an RGB or greyscale image", status=415) from None
    array = np.array(converted, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays
    return array[:, :, None] if array.ndim == 2 else array


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def mask_png(mask: np.ndarray, colours: np.ndarray) -> bytes:
    """HxW class indices as a palette PNG: pixel values are the classes, the palette their colours."""
    image = Image.fromarray(mask.astype(np.uint8), "P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colours)] = colours
    image.putpalette(palette.ravel().tolist())
    return _png(image)


def overlay_png(image: np.ndarray, mask: np.ndarray, colours: np.ndarray) -> bytes:
    """The image with each class's colour blended over it (RGB PNG)."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    blended = (1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * colourise(mask, colours)
    return _png(Image.fromarray(blended.round().astype(np.uint8), "RGB"))


def cutout_png(image: np.ndarray, mask: np.ndarray) -> bytes:
    """The image as RGBA with the background (class 0) transparent: the Carvana use."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    alpha = np.where(mask != 0, 255, 0).astype(np.uint8)[:, :, None]
    return _png(Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA"))


def mask_summary(mask: np.ndarray, class_names: list[str], rle: bool) -> dict:
    """Classes present with pixel counts, fractions, boxes [x, y, width, height] and optionally COCO RLE."""
    counts = np.bincount(mask.ravel(), minlength=len(class_names))
    height, width = mask.shape
    return {
        "width": width,
        "height": height,
        "classes": [_class_entry(mask == index, int(index), class_names, int(counts[index]), rle)
                    for index in np.flatnonzero(counts)],
    }


def _class_entry(region: np.ndarray, index: int, class_names: list[str], pixels: int, rle: bool) -> dict:
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    entry = {
        "index": index,
        "name": class_names[index],
        "pixels": pixels,
        "fraction": round(pixels / region.size, 6),
        "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)],
    }
    if rle:
        entry["rle"] = _rle(region)
    return entry


def _rle(region: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    encoded = coco_mask.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def hex_colour(rgb) -> str:
    """#RRGGBB of an (r, g, b) triple: how class colours are written in palette.json and legends."""
    return "#{:02X}{:02X}{:02X}".format(*(int(c) for c in rgb))


def legend(counts: np.ndarray, class_names: list[str], colours: np.ndarray) -> list[dict]:
    """The classes present with their colour and pixel fraction: the key to a mask, overlay or cutout.

    `counts` is the per-class pixel count the handler already computes for its metrics, so an
    image answer carries its legend at no extra pass over the mask.
    """
    total = int(counts.sum())
    return [{"index": int(i), "name": class_names[i], "colour": hex_colour(colours[i]),
             "fraction": round(int(counts[i]) / total, 6)} for i in np.flatnonzero(counts)]


def top_k(probabilities: np.ndarray, class_names: list[str], k: int) -> dict:
    """The k most probable classes, best first."""
    order = np.argsort(-probabilities, kind="stable")[: min(k, len(class_names))]
    return {"predictions": [{"index": int(i), "name": class_names[i], "probability": round(float(probabilities[i]), 6)}
                            for i in order]}
