"""FCN metrics against confusion matrices worked out by hand."""
from __future__ import annotations

import json
import math
from fractions import Fraction as F

import numpy as np
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.metrics import ConfusionMatrix, SegMetrics, format_table


def _arrays_for(matrix, ignored=2, seed=0):
    """label/pred maps (3x4 etc.) whose confusion matrix is ``matrix``, plus ignored pixels."""
    labels, preds = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            labels += [i] * count
            preds += [j] * count
    labels += [255] * ignored
    preds += [len(matrix) - 1] * ignored  # a prediction on an ignored pixel must not count
    order = np.random.default_rng(seed).permutation(len(labels))
    label = np.array(labels, np.uint8)[order]
    pred = np.array(preds, np.int64)[order]
    return label.reshape(-1, 4), pred.reshape(-1, 4)


# Rows truth, columns prediction.
#   n = [[3, 1, 0],    t = [4, 4, 2]  (row sums)
#        [2, 2, 0],    p = [5, 4, 1]  (column sums)
#        [0, 1, 1]]    diag = [3, 2, 1], total 10
# pixel accuracy = 6/10 = 3/5
# accuracy per class 3/4, 2/4, 1/2 -> mean accuracy = 7/12
# IU: 3/(4+5-3) = 1/2, 2/(4+4-2) = 1/3, 1/(2+1-1) = 1/2 -> mean IU = 4/9
# fw IU = (4*1/2 + 4*1/3 + 2*1/2) / 10 = 13/30
HAND = [[3, 1, 0], [2, 2, 0], [0, 1, 1]]


def test_hand_computed_3x3():
    label, pred = _arrays_for(HAND)
    cm = ConfusionMatrix(3)
    cm.update(label, pred)
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, HAND)
    m = cm.compute()
    assert m.pixel_accuracy == pytest.approx(float(F(3, 5)))
    assert m.mean_accuracy == pytest.approx(float(F(7, 12)))
    assert m.mean_iu == pytest.approx(float(F(4, 9)))
    assert m.fw_iu == pytest.approx(float(F(13, 30)))
    np.testing.assert_allclose(m.per_class_iu, [1 / 2, 1 / 3, 1 / 2])
    np.testing.assert_allclose(m.per_class_accuracy, [3 / 4, 1 / 2, 1 / 2])
    assert m.num_pixels == 10


def test_update_accumulates_and_merge_adds():
    label, pred = _arrays_for(HAND)
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(label, pred)
    a.update(label[:1], pred[:1])
    b.update(label[1:], pred[1:])
    b.merge(a)
    expected = np.array(HAND) * 2
    np.testing.assert_array_equal(b.matrix, expected)
    # same ratios, twice the counts
    assert b.compute().mean_iu == pytest.approx(4 / 9)
    with pytest.raises(FCNError, match="cannot merge a confusion matrix of 4 classes"):
        b.merge(ConfusionMatrix(4))


def test_matches_naive_count_on_random_maps():
    rng = np.random.default_rng(3)
    label = rng.integers(0, 5, (37, 41)).astype(np.uint8)
    label[rng.random(label.shape) < 0.1] = 255
    pred = rng.integers(0, 5, (37, 41))
    cm = ConfusionMatrix(5)
    cm.update(label, pred)
    naive = np.zeros((5, 5), np.int64)
    for t, p in zip(label.ravel(), pred.ravel()):
        if t != 255:
            naive[t, p] += 1
    np.testing.assert_array_equal(cm.matrix, naive)


def test_custom_ignore_label():
    cm = ConfusionMatrix(2, ignore_label=7)
    cm.update(np.array([[0, 1, 7]]), np.array([[0, 0, 1]]))
    np.testing.assert_array_equal(cm.matrix, [[1, 0], [1, 0]])
    with pytest.raises(FCNError, match=r"label values 255 are out of range.*0\.\.1 or 7"):
        cm.update(np.array([[255]]), np.array([[0]]))


def test_absent_class_is_nan_and_skipped():
    # class 3 appears in neither truth nor prediction: NaN, and the means equal the 3-class ones
    label, pred = _arrays_for(HAND)
    cm = ConfusionMatrix(4)
    cm.update(label, pred)
    m = cm.compute()
    assert math.isnan(m.per_class_iu[3]) and math.isnan(m.per_class_accuracy[3])
    assert m.mean_iu == pytest.approx(4 / 9)
    assert m.mean_accuracy == pytest.approx(7 / 12)
    assert m.fw_iu == pytest.approx(13 / 30)


def test_class_only_in_prediction_has_iu_zero_and_accuracy_nan():
    # n = [[2,0,1],[0,1,0],[0,0,0]]: t = [3,1,0], p = [2,1,1], diag = [2,1,0]
    # acc = [2/3, 1, NaN] -> 5/6; IU = [2/3, 1, 0/1 = 0] -> 5/9; pixel acc 3/4; fw = (2+1)/4
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 0, 1]), np.array([0, 0, 2, 1]))
    m = cm.compute()
    assert m.per_class_iu[2] == 0.0
    assert math.isnan(m.per_class_accuracy[2])
    assert m.mean_accuracy == pytest.approx(5 / 6)
    assert m.mean_iu == pytest.approx(5 / 9)
    assert m.pixel_accuracy == pytest.approx(3 / 4)
    assert m.fw_iu == pytest.approx(3 / 4)


def test_as_dict_is_json_with_null_for_nan():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    d = cm.compute().as_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["per_class_iu"] == [1.0, 1.0, None]
    assert back["per_class_accuracy"] == [1.0, 1.0, None]
    assert back["mean_iu"] == 1.0 and back["num_pixels"] == 2


def test_errors_name_the_problem():
    cm = ConfusionMatrix(3)
    with pytest.raises(FCNError, match=r"label shape \(2, 2\) and prediction shape \(2, 3\)"):
        cm.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(FCNError, match=r"label values 3, 9 are out of range; expected class "
                                       r"indices 0\.\.2 or 255"):
        cm.update(np.array([0, 3, 9, 255]), np.array([0, 0, 0, 0]))
    with pytest.raises(FCNError, match=r"prediction values -1, 3 are out of range; expected "
                                       r"class indices 0\.\.2"):
        cm.update(np.array([0, 1, 2]), np.array([-1, 3, 0]))
    with pytest.raises(FCNError, match="prediction has dtype float32; expected an integer"):
        cm.update(np.zeros(3, np.uint8), np.zeros(3, np.float32))
    with pytest.raises(FCNError, match="no labelled pixels were scored"):
        cm.update(np.full(4, 255, np.uint8), np.zeros(4, np.uint8))
        cm.compute()
    assert cm.matrix.sum() == 0  # rejected updates count nothing


def test_format_table():
    label, pred = _arrays_for(HAND)
    cm = ConfusionMatrix(4)
    cm.update(label, pred)
    table = format_table(cm.compute(), ["background", "disc", "square", "ring"])
    lines = table.splitlines()
    assert lines[0] == "| class | IU (%) | accuracy (%) |"
    assert lines[2] == "| 0 background | 50.0 | 75.0 |"
    assert lines[3] == "| 1 disc | 33.3 | 50.0 |"
    assert lines[5] == "| 3 ring | - | - |"
    assert lines[6] == "| **mean** | **44.4** | **58.3** |"
    assert "fw IU 43.3 %" in table
    with pytest.raises(FCNError, match="2 class names for 4 classes"):
        format_table(cm.compute(), ["a", "b"])
    assert isinstance(cm.compute(), SegMetrics)
