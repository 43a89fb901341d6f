"""Hand-computed checks of every convention of wsolevaluation's box scoring, on the
box sweep (`wsol.protocols.box_sweep`) and on the plain reference loop."""

from __future__ import annotations

import numpy as np
import pytest

from wsol.protocols.box_sweep import (
    _box_bits,
    box_correct_at_thresholds,
    levels_for_thresholds,
    scoremap_to_uint8,
    sweep,
    threshold_list,
)
from wsol.protocols.reference import reference_boxes_at_threshold, reference_iou_matrix


def has_box(scoremap, t, box) -> bool:
    """Engine: is `box` (inclusive) one of the map's boxes at threshold t? (IoU 1.0 is
    reached only by an identical box.)"""
    v2, _ = box_correct_at_thresholds(
        scoremap, np.array([box]), np.array([t]), [1.0], largest_iou=None
    )
    return bool(v2[0, 0])


def ref_boxes(scoremap, t, multi=True) -> list:
    return sorted(reference_boxes_at_threshold(scoremap, t, multi).tolist())


def test_uint8_conversion_truncates():
    s = np.array([[0.999, 1.0, 0.5, 0.0, 0.0039]])
    assert scoremap_to_uint8(s).tolist() == [[254, 255, 127, 0, 0]]


def test_level_is_int_of_threshold_times_uint8_max():
    # max 0.6 -> uint8 153; int(0.5 * 153) = int(76.5) = 76, int(0.49 * 153) = 74
    assert levels_for_thresholds(np.array([0.5, 0.49, 0.3, 0.0]), 153).tolist() == [76, 74, 45, 0]
    assert levels_for_thresholds(threshold_list(0.25), 255).tolist() == [0, 63, 127, 191]


def _two_blocks():
    m = np.zeros((12, 12))
    m[1:4, 1:5] = 0.6  # A: uint8 153, rows 1..3, cols 1..4
    m[7:10, 6:9] = 0.3  # B: uint8 76 (0.3 * 255 = 76.5), rows 7..9, cols 6..8
    return m


def test_strict_greater_and_max_below_one():
    m = _two_blocks()
    a, b = [1, 1, 5, 4], [6, 7, 9, 10]  # x1 = x + w, y1 = y + h
    # t = 0.5: level int(0.5 * 153) = 76, and B's 76 > 76 is false
    assert ref_boxes(m, 0.5) == [a]
    assert has_box(m, 0.5, a) and not has_box(m, 0.5, b)
    # t = 0.49: level 74 < 76, both
    assert ref_boxes(m, 0.49) == [a, b]
    assert has_box(m, 0.49, a) and has_box(m, 0.49, b)


def test_box_is_x_plus_w_clipped_to_w_minus_1():
    m = np.zeros((6, 8))
    m[2:6, 5:8] = 1.0  # touches the bottom and right edges
    m[0:2, 0:2] = 1.0  # cols/rows 0..1: x1 = 0 + 2 = 2 (one past the last column)
    assert ref_boxes(m, 0.5) == [[0, 0, 2, 2], [5, 2, 7, 5]]
    assert has_box(m, 0.5, [5, 2, 7, 5])
    assert has_box(m, 0.5, [0, 0, 2, 2])
    assert not has_box(m, 0.5, [0, 0, 1, 1])


def test_hole_contour_box_is_the_hole_grown_by_one():
    m = np.zeros((9, 9))
    m[2:7, 2:7] = 1.0
    m[4, 4] = 0.0  # a one-pixel hole
    # the hole's contour runs over the ring pixels around it: x = 4 - 1, w = 3
    assert ref_boxes(m, 0.5) == [[2, 2, 7, 7], [3, 3, 6, 6]]
    sw = sweep(scoremap_to_uint8(m), np.array([[3, 3, 6, 6]]), [1.0])
    assert sw.n_components[127] == 1 and sw.n_holes[127] == 1
    assert sw.n_correct[127, 0] == 1
    assert has_box(m, 0.5, [3, 3, 6, 6])
    # a 2x1 hole: x = 3, w = 1 + 2 + 1 -> [3, 3, 7, 6]
    m[4, 5] = 0.0
    assert ref_boxes(m, 0.5) == [[2, 2, 7, 7], [3, 3, 7, 6]]
    assert has_box(m, 0.5, [3, 3, 7, 6])


def test_empty_foreground_gives_the_zero_box_and_its_iou():
    m = np.zeros((10, 10))
    assert ref_boxes(m, 0.0) == [[0, 0, 0, 0]]
    # [0,0,0,0] vs [0,0,1,1]: intersection 1, union 1 + 4 - 1 -> IoU 0.25
    gt = np.array([[0, 0, 1, 1]])
    v2, v1 = box_correct_at_thresholds(
        m, gt, threshold_list(0.1), [0.2, 0.25, 0.3], largest_iou=0.25
    )
    assert v2.all(axis=0).tolist() == [True, True, False]
    assert not v2[:, 2].any()
    assert v1.all()
    sw = sweep(scoremap_to_uint8(m), gt, [0.25])
    assert (sw.n_contours == 0).all()
    assert sw.empty_correct.tolist() == [True]


def test_constant_map_below_one_is_one_whole_image_box():
    m = np.full((5, 7), 0.5)  # uint8 127 everywhere, levels int(t * 127) < 127
    whole = [0, 0, 6, 4]  # x + w = 7 clipped to 6, y + h = 5 clipped to 4
    for t in (0.0, 0.5, 0.99):
        assert ref_boxes(m, t) == [whole]
        assert has_box(m, t, whole)


def test_inclusive_iou():
    assert reference_iou_matrix(np.array([[0, 0, 1, 1]]), np.array([[1, 1, 2, 2]]))[
        0, 0
    ] == pytest.approx(1 / 7)
    # a 2x2 block gives the box [0, 0, 2, 2] (3x3 inclusive): IoU with [1,1,2,2] = 4 / 9
    m = np.zeros((8, 8))
    m[0:2, 0:2] = 1.0
    v2, _ = box_correct_at_thresholds(
        m, np.array([[1, 1, 2, 2]]), np.array([0.5]), [0.44, 0.45], largest_iou=None
    )
    assert v2[0].tolist() == [True, False]
    # a non-positive denominator gives IoU 0
    assert reference_iou_matrix(np.array([[0, 0, -2, 0]]), np.array([[0, 0, -2, 0]]))[0, 0] == 0
    gt = np.array([[0, 0, -2, 0]], dtype=np.int64)
    assert _box_bits(0, 0, -2, 0, gt, np.array([1e-9])) == 0


def test_any_box_against_any_gt_box_and_v1_takes_the_largest():
    m = np.zeros((20, 20))
    m[1:9, 1:11] = 1.0  # A, the largest: box [1, 1, 11, 9]
    m[14:18, 14:18] = 1.0  # B: box [14, 14, 18, 18]
    gt = np.array([[0, 12, 5, 19], [14, 14, 18, 18]])  # far from both, then B exactly
    v2, v1 = box_correct_at_thresholds(m, gt, np.array([0.5]), [0.5], largest_iou=0.5)
    assert v2[0, 0]  # B matches the second GT box
    assert not v1[0]  # the largest contour is A
    gt_a = np.array([[1, 1, 11, 9]])
    v2, v1 = box_correct_at_thresholds(m, gt_a, np.array([0.5]), [0.5], largest_iou=0.5)
    assert v2[0, 0] and v1[0]


def test_sweep_counts_contours_per_level():
    m = np.zeros((10, 10), dtype=np.uint8)
    m[1:4, 1:4] = 200
    m[6:9, 6:9] = 100
    m[2, 2] = 50  # a hole in the first block at levels 50..199
    sw = sweep(m, np.array([[0, 0, 9, 9]]), [0.5])
    assert sw.n_components[255] == 0 and sw.n_components[199] == 1
    assert sw.n_components[99] == 2 and sw.n_components[49] == 2 and sw.n_components[0] == 2
    # the 50 pixel is background from level 50 on, its ring foreground below level 200
    assert (
        sw.n_holes[200] == 0
        and sw.n_holes[199] == 1
        and sw.n_holes[50] == 1
        and sw.n_holes[49] == 0
    )
    assert sw.n_contours[99] == 3
