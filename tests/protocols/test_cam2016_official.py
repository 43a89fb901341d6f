"""Cam2016OfficialMetric: dt_box's steps on hand-made heatmaps, and the released
evaluation's guesses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsol.protocols import Cam2016OfficialMetric
from wsol.protocols.cam2016_official import (
    big_overlap,
    dt_box,
    dt_keep_mask,
    limit_rect,
    merge_boxes,
    official_boxes,
    official_heatmap,
    rank_boxes,
)

from .helpers import make_batch

INF = 1e20


def _envelope(f):
    """The 1-D squared-distance lower envelope as dt.c computes it (float64)."""
    n = len(f)
    v = [0] * n
    z = [0.0] * (n + 1)
    k = 0
    z[0], z[1] = -INF, INF
    for q in range(1, n):
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / float(2 * q - 2 * v[k])
        while s <= z[k]:
            k -= 1
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / float(2 * q - 2 * v[k])
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = INF
    d = [0.0] * n
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        d[q] = (q - v[k]) * (q - v[k]) + f[v[k]]
    return d


def dt_binary_port(fg: np.ndarray) -> np.ndarray:
    """dt.c's dt_binary on a 0/255 image, returning the uint8 image it writes."""
    rows, cols = fg.shape
    m = np.where(fg, INF, 0.0)
    for x in range(cols):
        m[:, x] = _envelope(list(m[:, x]))
    for y in range(rows):
        m[y, :] = _envelope(list(m[y, :]))
    m = np.sqrt(m)
    mi, ma = m.min(), m.max()
    if mi == ma:
        return np.where(fg, 255, 0).astype(np.uint8)
    scale = 255.0 / (ma - mi)
    out = np.zeros(fg.shape, dtype=np.uint8)
    for i in range(rows):
        for j in range(cols):
            t = math.floor(m[i, j] * scale + 0.5)
            out[i, j] = min(max(t, 0), 255)
    return out


def test_dt_keep_mask_equals_dt_c():
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = int(rng.integers(1, 18)), int(rng.integers(1, 18))
        fg = rng.random((h, w)) < rng.uniform(0.3, 0.97)
        keep = int(rng.choice([0, 10, 60]))
        np.testing.assert_array_equal(dt_keep_mask(fg, keep), dt_binary_port(fg) > keep)
    for fg in (np.ones((5, 7), bool), np.zeros((5, 7), bool)):  # unchanged when min == max
        np.testing.assert_array_equal(dt_keep_mask(fg, 10), dt_binary_port(fg) > 10)
        np.testing.assert_array_equal(dt_keep_mask(fg, 10), fg)


def test_dt_keep_mask_equals_scipy_edt_scaled():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    for _ in range(20):
        h, w = int(rng.integers(20, 120)), int(rng.integers(20, 120))
        fg = ndimage.gaussian_filter(rng.random((h, w)), 3) > 0.5
        if fg.all() or not fg.any():
            continue
        d = ndimage.distance_transform_edt(fg)
        t = np.clip(np.floor(d * (255.0 / d.max()) + 0.5), 0, 255)
        np.testing.assert_array_equal(dt_keep_mask(fg, 10), t > 10)
    for shape in ((1, 1), (375, 500), (500, 333)):  # all foreground stays foreground
        assert dt_keep_mask(np.ones(shape, bool), 10).all()


def test_dt_erodes_the_rim_of_a_big_region():
    fg = np.zeros((80, 80), bool)
    fg[10:70, 10:70] = True  # largest distance 30: scale 8.5; d = 1 -> 9 (dropped), d = 2 -> 17
    want = np.zeros_like(fg)
    want[11:69, 11:69] = True
    np.testing.assert_array_equal(dt_keep_mask(fg, 10), want)


def test_heatmap_is_divided_by_the_max_and_rounded():
    assert official_heatmap(np.array([[0.0, 1.0, 2.0, -2.0]])).tolist() == [[0, 128, 255, 0]]
    assert official_heatmap(np.zeros((3, 3))) is None
    assert official_heatmap(np.full((3, 3), -1.0)) is None


def test_threshold_is_strictly_greater():
    g = np.zeros((30, 40), dtype=np.uint8)
    g[5:15, 5:20] = 20
    assert dt_box(g, (20, 100, 110)) == []
    g[5:15, 5:20] = 21
    assert dt_box(g, (20, 100, 110)) == [(5, 5, 15, 10)]


def test_the_20_100_110_rule_on_nested_plateaus():
    g = np.zeros((60, 80), dtype=np.uint8)
    g[10:30, 10:50] = 50  # R1: only th 20
    g[12:22, 12:32] = 105  # R2: th 20 and 100
    g[14:18, 34:46] = 200  # R3: all three
    # rects: th 20 -> R1; th 100 -> R2, R3; th 110 -> R3. Ranked: R1 800, R2 200, R3 48, R3 48;
    # the second R3 overlaps the first by 48 > int(48 * 0.5) and is merged away
    assert dt_box(g, (20, 100, 110)) == [(10, 10, 40, 20), (12, 12, 20, 10), (34, 14, 12, 4)]
    np.testing.assert_array_equal(
        official_boxes(g / 255.0), [[10, 10, 50, 30], [12, 12, 32, 22], [34, 14, 46, 18]]
    )


def test_merge_skips_the_box_after_an_erase():
    a, b, c = (10, 10, 40, 20), (10, 10, 40, 20), (11, 11, 38, 18)
    assert big_overlap(a, b) and big_overlap(a, c)
    assert merge_boxes([a, b, c]) == [a, c]  # c moved into b's place and was skipped
    # the same from a heatmap: P (105) is found at th 20 and 100, Q (120) at 110
    g = np.zeros((40, 60), dtype=np.uint8)
    g[10:30, 10:50] = 105
    g[11:29, 11:49] = 120
    assert dt_box(g, (20, 100, 110)) == [a, c]


def _merge_literal(rects):
    """mergeBBox as the C++ reads, one pair at a time (the specification)."""

    def overlap(a, b):
        t = int(float(max(a[2] * a[3], b[2] * b[3])) * 0.5)
        xo = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        yo = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return xo * yo > t

    out = list(rects)
    i = 0
    while i < len(out):
        j = i + 1
        while j < len(out):
            if overlap(out[i], out[j]):
                del out[j]
            j += 1
        i += 1
    return out


@pytest.mark.parametrize("seed", range(6))
def test_merge_equals_the_pairwise_loop(seed):
    # many nested, overlapping rects (runs of consecutive hits, where the skip matters),
    # some with a negative side as limit_rect can leave one
    rng = np.random.default_rng(seed)
    n = 300
    x, y = rng.integers(0, 40, n), rng.integers(0, 40, n)
    w, h = rng.integers(-3, 30, n), rng.integers(-3, 30, n)
    rects = rank_boxes([tuple(int(v) for v in r) for r in zip(x, y, w, h)])
    merged = merge_boxes(rects)
    assert merged == _merge_literal(rects)
    assert 0 < len(merged) < n
    assert merge_boxes([]) == [] and merge_boxes(rects[:1]) == rects[:1]


def test_big_overlap_and_rank():
    assert not big_overlap((0, 0, 10, 10), (5, 0, 10, 10))  # 50 > int(100 * 0.5) is false
    assert big_overlap((0, 0, 10, 10), (4, 0, 10, 10))  # 60 > 50
    assert rank_boxes([(0, 0, 2, 2), (5, 5, 3, 3), (9, 9, 1, 4), (1, 1, 4, 1)]) == [
        (5, 5, 3, 3),
        (0, 0, 2, 2),
        (9, 9, 1, 4),  # ties keep their order (stable)
        (1, 1, 4, 1),
    ]


def test_limit_clamps_and_the_opencv2_border():
    assert limit_rect((70, 2, 10, 3), 80, 60) == (70, 2, 5, 3)  # w <= W - x - 5
    # x <= W - 5; w is clamped to [0, W - bb.x - 5] = [0, -3], which LIMIT resolves to -3
    assert limit_rect((78, 57, 2, 3), 80, 60) == (75, 55, -3, -2)
    g = np.zeros((30, 40), dtype=np.uint8)
    g[5:15, 0:10] = 255  # touches the left edge
    # (each threshold finds the region; the merge quirk keeps two of the three copies)
    assert dt_box(g, (20, 100, 110), opencv2_border=False) == [(0, 5, 10, 10)] * 2
    assert dt_box(g, (20, 100, 110), opencv2_border=True) == [(1, 5, 9, 10)] * 2


def test_invalid_thresholds_fall_back_like_dt_box():
    with pytest.warns(UserWarning, match="30, 90, 150"):
        metric = Cam2016OfficialMetric(thresholds=(100, 20, 110))
    assert metric.thresholds == (30, 90, 150)


def _img(a=False, b=False):
    m = np.zeros((50, 70), dtype=np.float32)
    if a:
        m[5:15, 5:25] = 50 / 255  # heatmap 50: found at th 20 only; rect (5, 5, 20, 10)
    if b:
        m[30:36, 40:52] = 1.0  # heatmap 255: at every threshold; rect (40, 30, 12, 6)
    return m


def test_guesses_and_the_combined_heuristic_by_hand():
    z = _img()
    ab, a, b = _img(True, True), _img(a=True), _img(b=True)
    # image 0: label 0 = top-1; class 0's boxes: box 1 = A (wrong), box 2 = B (right)
    # image 1: label 2 = top-2 class, its box 1 = B (right)
    # image 2: label 4 = top-4 class, its box 1 = B (right)
    maps = torch.as_tensor(np.stack([[ab, ab, z, z, z, z], [b, a, b, a, a, a], [b, a, a, a, b, a]]))
    classes = torch.tensor([[0, 0, 3, 4, 5, 6], [2, 9, 2, 8, 8, 8], [4, 9, 8, 7, 4, 6]])
    gt = [[40, 30, 53, 37]]  # suite box of B's inclusive box [40, 30, 52, 36]
    batch = make_batch([0, 2, 4], [gt] * 3, [[50, 70]] * 3)
    metric = Cam2016OfficialMetric()
    r = metric.score(maps, classes, batch)
    assert r["box1"][0, 0].tolist() == [5, 5, 25, 15]
    assert r["box2"][0, 0].tolist() == [40, 30, 52, 36]
    assert r["box1"][0, 2].tolist() == [0, 0, 69, 49]  # no region: the whole image
    assert r["iou1"][:, 0].tolist() == [0.0, 1.0, 1.0]
    assert r["top1"].tolist() == [False, False, False]
    assert r["top5"].tolist() == [False, True, True]
    assert r["combined"].tolist() == [True, True, False]
    assert r["gt_known"].tolist() == [False, True, True]
    metric.update(r)
    out = metric.compute()
    assert out["official_loc_top1_err"] == 100.0
    assert out["official_loc_top5_err"] == pytest.approx(100 / 3)
    assert out["official_loc_top5_err_combined"] == pytest.approx(100 / 3)
    assert out["official_gt_known_loc"] == pytest.approx(200 / 3)
    assert out["official_mean_iou"] == pytest.approx(200 / 3)
    assert out["official_empty_map_rate"] == pytest.approx(100 * 4 / 13)  # 5 + 3 + 5 maps
    rows = metric.rows(r)
    assert rows[0]["cam2016_official_gt_known_box"] == "5 5 26 16"  # suite convention
    assert rows[0]["cam2016_official_n_boxes"] == 3  # A, B, and the B that survived the merge
