"""Decoding and encoding without a server: every bad input is refused with its status and reason,
odd but valid images are converted, and the answer encodings hold what they claim."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from segflow.config.recipe import ClassSpec
from segflow.data.palette import palette
from segflow.models import ModelConfig, create_model
from segflow.serving.codec import (
    RejectedInput,
    cutout_png,
    decode_image,
    legend,
    mask_png,
    mask_summary,
    overlay_png,
    top_k,
)
from segflow.serving.predictor import Predictor
from support.serving import MAX_PIXELS, bad_inputs, convertible_inputs, encode, noise, reference_mask, tiny_segmenter

# Text, JSON and multipart bodies are taken apart by TorchServe; the handler refuses what arrives.
BYTES_REFUSALS = [c for c in bad_inputs() if c.reason not in ("wrong_content_type", "no_image")]


@pytest.mark.parametrize("case", BYTES_REFUSALS, ids=lambda c: c.name)
def test_bad_bytes_are_refused_with_status_and_reason(case):
    with pytest.raises(RejectedInput) as refused:
        decode_image(case.body, MAX_PIXELS, 3)
    assert (refused.value.status, refused.value.reason) == (case.status, case.reason)
    assert json.loads(json.dumps(refused.value.as_json()))["message"] == str(refused.value)


@pytest.mark.parametrize("case", convertible_inputs(), ids=lambda c: c.name)
def test_other_modes_are_converted_to_rgb(case):
    image = decode_image(case.body, MAX_PIXELS, 3)
    assert image.shape == (40, 50, 3) and image.dtype == np.uint8 and image.flags.writeable


def test_sixteen_bit_is_scaled_not_clipped():
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    image = decode_image(encode(Image.fromarray(values), "PNG"), MAX_PIXELS, 1)
    assert image[0, :, 0].tolist() == [0, 1, 255, 128]


def test_channels_follow_the_model():
    rgb = noise(10, 12)
    assert decode_image(encode(rgb, "PNG"), MAX_PIXELS, 1).shape == (10, 12, 1)
    assert decode_image(encode(rgb, "PNG"), MAX_PIXELS, 4)[:, :, 3].min() == 255


def test_mask_png_holds_class_indices_and_the_palette():
    mask = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    colours = palette(tiny_segmenter()[1].classes)
    image = Image.open(io.BytesIO(mask_png(mask, colours)))
    assert image.mode == "P" and np.array_equal(np.asarray(image), mask)
    assert np.array_equal(np.array(image.getpalette()[:9]).reshape(3, 3), colours)


def test_summary_counts_boxes_and_rle():
    mask = np.zeros((6, 8), dtype=np.uint8)
    mask[1:3, 2:7] = 2
    summary = mask_summary(mask, ["background", "square", "disc"], rle=True)
    disc = summary["classes"][1]
    assert [c["name"] for c in summary["classes"]] == ["background", "disc"]
    assert disc["pixels"] == 10 and disc["fraction"] == round(10 / 48, 6) and disc["bbox"] == [2, 1, 5, 2]
    decoded = coco_mask.decode({"size": disc["rle"]["size"], "counts": disc["rle"]["counts"].encode()})
    assert np.array_equal(decoded, mask == 2)


def test_legend_gives_colour_and_fraction_of_the_classes_present():
    colours = np.array([[0, 0, 0], [255, 0, 0], [60, 180, 75]], dtype=np.uint8)
    entries = legend(np.array([30, 0, 10]), ["background", "square", "disc"], colours)
    assert entries == [{"index": 0, "name": "background", "colour": "#000000", "fraction": 0.75},
                       {"index": 2, "name": "disc", "colour": "#3CB44B", "fraction": 0.25}]


def test_overlay_and_cutout():
    image, mask = noise(6, 8), np.zeros((6, 8), dtype=np.uint8)
    mask[:, 4:] = 1
    cutout = np.asarray(Image.open(io.BytesIO(cutout_png(image, mask))))
    assert cutout.shape == (6, 8, 4) and (cutout[:, :4, 3] == 0).all() and (cutout[:, 4:, 3] == 255).all()
    assert np.array_equal(cutout[:, :, :3], image)
    overlay = Image.open(io.BytesIO(overlay_png(image, mask, np.array([[0, 0, 0], [255, 0, 0]], dtype=np.uint8))))
    assert overlay.mode == "RGB" and overlay.size == (8, 6)


def test_top_k_is_sorted_and_bounded():
    answer = top_k(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"], k=5)
    assert [p["name"] for p in answer["predictions"]] == ["b", "c", "a"]


def test_images_of_different_sizes_share_a_batch_exactly():
    model, config = tiny_segmenter()
    predictor = Predictor(model, config)
    images = [noise(64, 64, 1), noise(80, 120, 2), noise(37, 53, 3), noise(200, 150, 4)]
    masks = predictor.segment(predictor.prepare(images), [i.shape[:2] for i in images])
    for image, mask in zip(images, masks, strict=True):
        assert mask.shape == image.shape[:2]
        assert np.array_equal(mask, reference_mask(model, config, image))
    assert len(np.unique(np.concatenate([m.ravel() for m in masks]))) == 3


def test_a_classifier_answers_class_probabilities():
    config = ModelConfig(name="smallcnn", task="classification", classes=[ClassSpec(name=f"c{i}") for i in range(4)],
                         in_channels=1, input_size=(28, 28), mean=[0.5], std=[0.25])
    predictor = Predictor(create_model(config).eval(), config)
    image = decode_image(encode(noise(40, 30), "PNG"), MAX_PIXELS, 1)  # RGB, another size: grey, resized
    probabilities = predictor.classify(predictor.prepare([image, image]))
    assert probabilities.shape == (2, 4) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    answer = top_k(probabilities[0], predictor.class_names, k=2)["predictions"]
    assert len(answer) == 2 and answer[0]["probability"] >= answer[1]["probability"]
