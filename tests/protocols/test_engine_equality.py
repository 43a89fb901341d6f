"""The engine gives exactly the numbers of wsolevaluation's per-threshold cv2 loop
(`wsol.protocols.reference`) on many random maps, and the contour-rect closed form it
relies on holds."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsol.protocols.box_sweep import box_correct_at_thresholds, sweep, threshold_list
from wsol.protocols.components import connected_regions, contour_boxes
from wsol.protocols.pxap import pxap_edges, pxap_from_histograms, pxap_histograms
from wsol.protocols.reference import (
    reference_box_correct,
    reference_pxap,
    reference_pxap_counts,
    reference_pxap_histograms,
)

from .helpers import cam_map, gaussian_map, noise_map, plateau_map, random_gt

IOUS = [0.3, 0.5, 0.7]


def _maps_224(rng, n):
    kinds = [gaussian_map, cam_map, plateau_map]
    out = []
    for i in range(n):
        m = kinds[i % len(kinds)](rng)
        if i % 4 == 3:
            m = m * rng.uniform(0.3, 0.99)  # max < 1
        out.append(m)
    out.append(np.zeros((224, 224)))
    out.append(np.full((224, 224), 0.7))
    return out


def _maps_small(rng, n):
    out = []
    for i in range(n):
        h, w = int(rng.integers(3, 40)), int(rng.integers(3, 40))
        kind = i % 3
        if kind == 0:
            m = noise_map(rng, h, w)
        elif kind == 1:
            m = np.round(noise_map(rng, h, w) * 4) / 4  # plateaus, holes
        else:
            m = cam_map(rng, h, w, side=int(rng.integers(2, 6)))
        if i % 5 == 4:
            m = m * rng.uniform(0.2, 0.99)
        out.append(m)
    return out


def _check(maps, rng, interval):
    thr = threshold_list(interval)
    n_v1_fallback_levels = 0
    for m in maps:
        h, w = m.shape
        gt = random_gt(rng, h, w)
        v2, v1 = box_correct_at_thresholds(m, gt, thr, IOUS, largest_iou=0.5)
        r2 = reference_box_correct(m, gt, thr, IOUS, multi_contour=True)
        r1 = reference_box_correct(m, gt, thr, [0.5], multi_contour=False)[:, 0]
        np.testing.assert_array_equal(v2, r2)
        np.testing.assert_array_equal(v1, r1)
        n_v1_fallback_levels += int((v1 != v2[:, 1]).sum())
    return n_v1_fallback_levels


def test_engine_equals_reference_interval_001_224():
    rng = np.random.default_rng(1)
    _check(_maps_224(rng, 30), rng, 0.01)


def test_engine_equals_reference_interval_0001_224():
    rng = np.random.default_rng(2)
    _check(_maps_224(rng, 5), rng, 0.001)


def test_engine_equals_reference_small_rough_maps():
    rng = np.random.default_rng(3)
    differing = _check(_maps_small(rng, 150), rng, 0.01)
    differing += _check(_maps_small(rng, 12), rng, 0.001)
    # the largest-contour (V1) answer really differs from the any-contour one here
    assert differing > 0


def test_gt_boxes_near_the_maps_boxes():
    """GT boxes made from the map's own components, so that many IoUs sit near the
    thresholds."""
    rng = np.random.default_rng(4)
    thr = threshold_list(0.01)
    for _ in range(40):
        m = cam_map(rng, 64, 80)
        u8 = (m * 255).astype(np.uint8)
        level = int(rng.integers(0, 255))
        rects = contour_boxes(u8 > level, cv2.RETR_TREE)
        if len(rects) == 0:
            continue
        x, y, w, h = rects[int(rng.integers(0, len(rects)))]
        jitter = rng.integers(-3, 4, 4)
        gt = np.array([[x, y, x + w, y + h]]) + jitter
        gt = np.clip(gt, 0, [79, 63, 79, 63])
        gt[:, 2:] = np.maximum(gt[:, 2:], gt[:, :2])
        v2, v1 = box_correct_at_thresholds(m, gt, thr, IOUS)
        np.testing.assert_array_equal(v2, reference_box_correct(m, gt, thr, IOUS, True))
        np.testing.assert_array_equal(v1, reference_box_correct(m, gt, thr, [0.5], False)[:, 0])


def closed_form_rects(mask: np.ndarray) -> np.ndarray:
    """The contour rects of a binary mask in the closed form the sweep relies on:
    8-connected foreground components, plus 4-connected background components off the
    border grown by one pixel; (n, 4) ``(x, y, w, h)``."""
    m = np.asarray(mask, dtype=bool)
    _, _, fb = connected_regions(m, connectivity=2)
    rects = [(int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])) for b in fb]
    if m.any():
        bl, _, bb = connected_regions(~m, connectivity=1)
        border = np.unique(np.concatenate([bl[0], bl[-1], bl[:, 0], bl[:, -1]]))
        for i, b in enumerate(bb):
            if i + 1 in border:
                continue
            rects.append((int(b[0]) - 1, int(b[1]) - 1, int(b[2] - b[0]) + 2, int(b[3] - b[1]) + 2))
    return np.asarray(rects, dtype=np.int64).reshape(-1, 4)


@pytest.mark.parametrize("mode", [cv2.RETR_TREE, cv2.RETR_CCOMP, cv2.RETR_LIST])
def test_contour_rects_are_components_and_grown_holes(mode):
    rng = np.random.default_rng(5)
    for _ in range(300):
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        got = sorted(map(tuple, contour_boxes(mask, mode).tolist()))
        want = sorted(map(tuple, closed_form_rects(mask).tolist()))
        assert got == want


def test_the_sweep_counts_the_contour_boxes_of_a_mask():
    """`sweep` at level 0 of a 0/255 map sees the mask's contours: as many, and for every
    box (wsolevaluation's ``[x, y, min(x + w, W - 1), min(y + h, H - 1)]``) as many
    contours giving it (IoU 1.0 is reached by an identical box only)."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        u8 = np.where(mask, np.uint8(255), np.uint8(0))
        rects = contour_boxes(mask, cv2.RETR_TREE)
        boxes = [(x, y, min(x + bw, w - 1), min(y + bh, h - 1)) for x, y, bw, bh in rects.tolist()]
        assert sweep(u8, np.zeros((0, 4)), [1.0]).n_contours[0] == len(boxes)
        for box in set(boxes):
            assert sweep(u8, np.array([box]), [1.0]).n_correct[0, 0] == boxes.count(box)


def test_pxap_histograms_equal_numpy_histogram():
    rng = np.random.default_rng(6)
    for interval in (0.01, 0.001, 0.25):
        thr = threshold_list(interval)
        edges = pxap_edges(thr)
        total_t = np.zeros(len(edges) - 1, dtype=np.int64)
        total_f = np.zeros(len(edges) - 1, dtype=np.int64)
        for i in range(8):
            s = gaussian_map(rng, 56, 56) if i % 2 else cam_map(rng, 56, 56)
            # values exactly on bin edges, and 0 and 1
            pick = rng.random(s.shape) < 0.2
            s[pick] = rng.choice(np.append(thr, 1.0), int(pick.sum()))
            mask = rng.choice(np.array([0, 1, 255], dtype=np.uint8), s.shape, p=[0.5, 0.3, 0.2])
            ht, hf = pxap_histograms(s, mask, edges)
            rt, rf = reference_pxap_histograms(s, mask, thr)
            np.testing.assert_array_equal(ht, rt)
            np.testing.assert_array_equal(hf, rf)
            # the reversed cumulative sums are the plain per-threshold counts
            tp, fp = reference_pxap_counts(s, mask, thr)
            n = len(thr)
            np.testing.assert_array_equal(ht[::-1].cumsum()[::-1][:n], tp)
            np.testing.assert_array_equal(hf[::-1].cumsum()[::-1][:n], fp)
            total_t += ht
            total_f += hf
        auc, _, _ = pxap_from_histograms(total_t, total_f)
        assert auc == reference_pxap(total_t, total_f)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_connected_regions_equal_scikit_image(connectivity):
    from skimage import measure

    rng = np.random.default_rng(7)
    for _ in range(200):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        mask = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        labels, areas, boxes = connected_regions(mask, connectivity)
        want = measure.label(mask, connectivity=connectivity)
        np.testing.assert_array_equal(labels, want)
        props = measure.regionprops(want)
        assert areas.tolist() == [p.area for p in props]
        assert boxes.tolist() == [[p.bbox[1], p.bbox[0], p.bbox[3], p.bbox[2]] for p in props]


def test_v1_area_bounds_decide_most_levels_and_agree_with_cv2_everywhere():
    """MaxBoxAcc (V1) keeps the largest contour. The sweep decides a level from area
    bounds of its contours where they separate the right from the wrong ones; every one
    of those decisions must equal cv2's ``max(contours, key=contourArea)`` at that level,
    and on realistic multi-object maps the bounds must decide most of the levels whose
    contours disagree (else the engine falls back to cv2 per level: slow, not wrong)."""
    from wsol.bench.eval_bench import make_realistic_maps
    from wsol.protocols.box_sweep import _iou_rows, _largest_contour_box, scoremap_to_uint8

    maps, gts = make_realistic_maps(24, seed=3)
    rng = np.random.default_rng(5)
    maps += [noise_map(rng, 40, 40) for _ in range(6)]  # many small contours and holes
    gts += [random_gt(rng, 40, 40) for _ in range(6)]
    decided = ambiguous = 0
    for m, gt in zip(maps, gts):
        u8 = scoremap_to_uint8(m)
        gt = np.asarray(gt, dtype=np.int64).reshape(-1, 4)
        sw = sweep(u8, gt, [0.5], largest_bit=0)
        n_cont, n_corr = sw.n_contours, sw.n_correct[:, 0]
        for level in range(256):
            if not 0 < n_corr[level] < n_cont[level]:
                continue
            ambiguous += 1
            fg = np.where(u8 > level, np.uint8(255), np.uint8(0))
            truth = _iou_rows(_largest_contour_box(fg), gt) >= 0.5
            state = int(sw.largest_state[level])
            if state >= 0:
                decided += 1
                assert bool(state) == truth, (level, state, truth)
    assert ambiguous > 100
    assert decided >= 0.8 * ambiguous, (decided, ambiguous)
