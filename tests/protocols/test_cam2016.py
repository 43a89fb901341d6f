"""Cam2016Metric and its box rule, on hand-made maps with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsol.protocols import Cam2016Metric, cam2016_box

from .helpers import make_batch


def test_largest_of_several_components():
    m = np.zeros((10, 10))
    m[0:2, 0:3] = 1.0  # 6 pixels
    m[5:9, 5:7] = 0.5  # 8 pixels
    assert cam2016_box(m, 0.2).tolist() == [5, 5, 7, 9]
    assert cam2016_box(m, 0.6).tolist() == [0, 0, 3, 2]  # 0.5 < 0.6 * 1.0


def test_threshold_is_inclusive():
    m = np.zeros((4, 4))
    m[0, 0] = 1.0
    m[0, 1] = 0.2  # == 0.2 * max: kept
    m[0, 2] = 0.19
    assert cam2016_box(m, 0.2).tolist() == [0, 0, 2, 1]


def test_ties_go_to_the_component_holding_the_maximum():
    m = np.zeros((10, 10))
    m[0:2, 0:2] = 0.5  # 4 pixels, first in raster order
    m[5:7, 5:7] = 0.5  # 4 pixels
    m[6, 6] = 1.0  # the maximum
    assert cam2016_box(m, 0.2).tolist() == [5, 5, 7, 7]


def test_ties_without_the_maximum_go_to_raster_order():
    m = np.zeros((10, 10))
    m[5:7, 0:2] = 0.5  # 4 pixels, first pixel (5, 0)
    m[0:2, 5:7] = 0.5  # 4 pixels, first pixel (0, 5): first in raster order
    m[9, 8:10] = 1.0  # the maximum, in a 2-pixel component
    assert cam2016_box(m, 0.2).tolist() == [5, 0, 7, 2]


def test_maps_without_a_positive_maximum_give_the_whole_image():
    for m in (np.zeros((6, 9)), np.full((6, 9), -1.0), np.full((6, 9), np.nan)):
        assert cam2016_box(m, 0.2).tolist() == [0, 0, 9, 6]
    assert cam2016_box(np.full((6, 9), 3.0), 0.2).tolist() == [0, 0, 9, 6]  # one component
    assert cam2016_box(np.ones((6, 9)), 1.5).tolist() == [0, 0, 9, 6]  # nothing kept


def test_connectivity_1_vs_2():
    m = np.zeros((8, 8))
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0  # a diagonal: one component with 8-neighbours
    m[5, 5] = m[5, 6] = 1.0  # two 4-connected pixels
    assert cam2016_box(m, 0.2, connectivity=2).tolist() == [0, 0, 3, 3]
    assert cam2016_box(m, 0.2, connectivity=1).tolist() == [5, 5, 7, 6]


def test_maps_are_upsampled_bilinearly_to_the_image():
    # a 2x2 map [[1, 0], [0, 0]] to 8x8: per axis weights 1, 1, .875, .625, .375, .125, 0, 0
    # (align_corners=False); product >= 0.2 holds up to index 4 on each axis (1 * .375)
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, :, 0, 0] = 1.0
    metric = Cam2016Metric()
    r = metric.score(maps, torch.tensor([[0, 0]]), make_batch([0], [[[0, 0, 5, 5]]], [[8, 8]]))
    assert r["boxes"][0, 0].tolist() == [0, 0, 5, 5]
    assert r["ious"][0, 0] == 1.0


def _block(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), dtype=np.float32)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_top1_top5_gt_known_by_hand():
    z = np.zeros((10, 10), dtype=np.float32)
    maps = np.stack(
        [
            # image 0: label 3, classes [3, 3, 5]; column 1 repeats class 3 (its map is not used)
            [_block(10, 10, 2, 6, 2, 6), _block(10, 10, 0, 1, 0, 1), z + 1],
            # image 1: label 1, classes [1, 7, 1]: top-1 wrong class, top-2 right
            [_block(10, 10, 0, 2, 0, 4), _block(10, 10, 0, 2, 0, 4), z],
            # image 2: label 2, classes [2, 2, 4]: right class, box too small
            [_block(10, 10, 0, 2, 0, 2), z, z],
        ]
    )
    classes = torch.tensor([[3, 3, 5], [1, 7, 1], [2, 2, 4]])
    gts = [[[2, 2, 6, 6]], [[0, 0, 4, 4]], [[0, 0, 10, 10]]]
    batch = make_batch([3, 1, 2], gts, [[10, 10]] * 3)
    metric = Cam2016Metric(threshold=0.2, connectivity=2, iou_threshold=0.5)
    r = metric.score(torch.as_tensor(maps), classes, batch)
    # image 0: box [2,2,6,6] -> IoU 1; image 1: [0,0,4,2] vs [0,0,4,4] -> 8/16; image 2: 4/100
    assert r["ious"][:, 0].tolist() == pytest.approx([1.0, 0.5, 0.04])
    assert r["boxes"][0, 1].tolist() == [2, 2, 6, 6]  # class 3's box, from column 0
    assert r["top1"].tolist() == [True, False, False]
    assert r["top5"].tolist() == [True, True, False]
    assert r["gt_known"].tolist() == [True, True, False]
    metric.update(r)
    out = metric.compute()
    assert out["loc_top1_err"] == pytest.approx(200 / 3)
    assert out["loc_top5_err"] == pytest.approx(100 / 3)
    assert out["gt_known_loc"] == pytest.approx(200 / 3)
    assert out["mean_iou"] == pytest.approx(100 * (1 + 0.5 + 0.04) / 3, abs=1e-8)
    # the whole image [0,0,10,10]: IoU 0.16, 0.16, 1.0
    assert out["full_image_gt_known_loc"] == pytest.approx(100 / 3)
    rows = metric.rows(r)
    assert rows[1]["cam2016_pred_class"] == 7
    assert rows[1]["cam2016_gt_known_box"] == "0 0 4 2"
    assert rows[0]["cam2016_iou"] == pytest.approx(1.0)
    # top-5 classes and GT boxes are written once by the evaluation loop, not per protocol
    assert not any(k.endswith(("_top5", "_gt_boxes")) for k in rows[0])
    assert len(rows) == 3 and all(k.startswith("cam2016_") for k in rows[2])


def test_score_is_pure():
    metric = Cam2016Metric()
    maps = torch.rand(2, 3, 4, 4)
    metric.score(
        maps,
        torch.tensor([[0, 1, 0], [1, 1, 0]]),
        make_batch([0, 1], [[[0, 0, 3, 3]]] * 2, [[8, 8]] * 2),
    )
    assert int(metric.n) == 0
