"""The metrics against numbers worked out by hand: ignore_index, a class in neither prediction nor
target, a binary (sigmoid) head and a classifier. Each test states the counts it expects."""

import math

import pytest
import torch

from segflow.evaluate import metrics
from segflow.models import probabilities

IGNORE = 255


def one_hot(predicted: list, num_classes: int) -> torch.Tensor:
    """Probabilities (N, C, ...) whose argmax is `predicted` (N, ...)."""
    return torch.nn.functional.one_hot(torch.tensor(predicted), num_classes).movedim(-1, 1).float()


def summary(task, num_classes, probs, target, ignore_index=IGNORE):
    collection = metrics.build_metrics(task, num_classes, ignore_index)
    metrics.update(collection, probs, torch.tensor(target))
    return metrics.summarise(collection, task)


# One 2x3 image, 3 classes; the pixel marked 255 is predicted 0 and must count nowhere.
TARGET = [[[0, 0, 1], [1, 2, IGNORE]]]
PREDICTED = [[[0, 1, 1], [1, 2, 0]]]
# 5 counted pixels, (target, predicted): (0,0) (0,1) (1,1) (1,1) (2,2)
#   class 0: TP 1, FP 0, FN 1 -> IoU 1/2, precision 1,   recall 1/2, dice 2/3
#   class 1: TP 2, FP 1, FN 0 -> IoU 2/3, precision 2/3, recall 1,   dice 4/5
#   class 2: TP 1, FP 0, FN 0 -> IoU 1,   precision 1,   recall 1,   dice 1


def test_segmentation_leaves_ignored_pixels_out():
    out = summary("segmentation", 3, one_hot(PREDICTED, 3), TARGET)
    assert out["val_accuracy"] == pytest.approx(4 / 5)
    assert out["val_per_class"]["iou"] == pytest.approx([1 / 2, 2 / 3, 1])
    assert out["val_per_class"]["precision"] == pytest.approx([1, 2 / 3, 1])
    assert out["val_per_class"]["recall"] == pytest.approx([1 / 2, 1, 1])
    assert out["val_per_class"]["f1"] == pytest.approx([2 / 3, 4 / 5, 1])
    assert out["val_miou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert out["val_mean_dice"] == pytest.approx((2 / 3 + 4 / 5 + 1) / 3)
    assert out["val_mean_precision"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert out["val_mean_recall"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert out["val_confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_a_class_in_neither_prediction_nor_target_is_nan_and_left_out_of_the_means():
    out = summary("segmentation", 4, one_hot(PREDICTED, 4), TARGET)
    for name in ("iou", "precision", "recall", "f1"):
        assert math.isnan(out["val_per_class"][name][3])
    assert out["val_miou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert out["val_mean_dice"] == pytest.approx((2 / 3 + 4 / 5 + 1) / 3)
    assert out["val_mean_recall"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert out["val_confusion"][3] == [0, 0, 0, 0]


def test_a_class_in_the_target_but_never_predicted_counts_as_zero():
    # target [0, 1, 2, 2], predicted [0, 1, 1, 1]: class 2 is present, never found
    #   class 0: TP 1 -> IoU 1;  class 1: TP 1, FP 2 -> IoU 1/3, precision 1/3;  class 2: FN 2 -> IoU 0, recall 0
    out = summary("segmentation", 3, one_hot([[0, 1, 1, 1]], 3), [[0, 1, 2, 2]])
    assert out["val_per_class"]["iou"] == pytest.approx([1, 1 / 3, 0])
    assert out["val_miou"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert out["val_mean_recall"] == pytest.approx((1 + 1 + 0) / 3)
    assert out["val_accuracy"] == pytest.approx(2 / 4)


def test_a_binary_head_is_scored_as_two_classes():
    # one sigmoid channel: logit > 0 -> class 1. predicted [[1, 0], [0, 1]], target [[1, 1], [0, 0]]
    #   class 0: TP 1, FP 1, FN 1 -> IoU 1/3, dice 1/2;  class 1: the same
    logits = torch.tensor([[[[2.0, -1.0], [-3.0, 0.5]]]])
    out = summary("segmentation", 2, probabilities(logits, binary=True), [[[1, 1], [0, 0]]])
    assert out["val_accuracy"] == pytest.approx(1 / 2)
    assert out["val_per_class"]["iou"] == pytest.approx([1 / 3, 1 / 3])
    assert out["val_miou"] == pytest.approx(1 / 3)
    assert out["val_mean_dice"] == pytest.approx(1 / 2)
    assert out["val_confusion"] == [[1, 1], [1, 1]]


def test_multiclass_classification_reports_accuracy_precision_recall():
    # target [0, 1, 1, 2], predicted [0, 2, 1, 2]
    #   class 0: TP 1 -> P 1, R 1;  class 1: TP 1, FN 1 -> P 1, R 1/2;  class 2: TP 1, FP 1 -> P 1/2, R 1
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.2, 0.7, 0.1], [0.0, 0.4, 0.6]])
    out = summary("classification", 3, probs, [0, 1, 1, 2])
    assert out["val_accuracy"] == pytest.approx(3 / 4)
    assert out["val_per_class"]["precision"] == pytest.approx([1, 1, 1 / 2])
    assert out["val_per_class"]["recall"] == pytest.approx([1, 1 / 2, 1])
    assert out["val_mean_precision"] == pytest.approx(5 / 6)
    assert out["val_mean_recall"] == pytest.approx(5 / 6)
    assert "val_miou" not in out and "iou" not in out["val_per_class"]
    assert set(metrics.scalars(out)) == {"val_accuracy", "val_mean_precision", "val_mean_recall"}


def test_top5_is_reported_for_more_than_five_classes():
    # 6 classes; the target's class ranks 1st, 2nd and 6th -> top-1 1/3, top-5 2/3
    probs = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05],
                          [0.4, 0.3, 0.1, 0.1, 0.05, 0.05],
                          [0.4, 0.3, 0.1, 0.1, 0.06, 0.04]])
    out = summary("classification", 6, probs, [0, 1, 5])
    assert out["val_accuracy"] == pytest.approx(1 / 3)
    assert out["val_top5"] == pytest.approx(2 / 3)
    assert metrics.reported("classification", 6) == ["train_loss", "val_loss", "val_accuracy", "val_top5",
                                                      "val_mean_precision", "val_mean_recall"]
    assert metrics.reported("segmentation", 2)[3:5] == ["val_miou", "val_mean_dice"]
