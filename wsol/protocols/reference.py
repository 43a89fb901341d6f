"""Plain per-threshold reference implementations of wsolevaluation's box and mask
scoring: one cv2 call per threshold, as its ``evaluation.py`` does. Slow; used by the
tests (the engine must give identical numbers) and by ``wsol.bench.eval_bench``.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage import measure

__all__ = [
    "reference_box_correct",
    "reference_boxes_at_threshold",
    "reference_cam2016_box",
    "reference_iou_matrix",
    "reference_pxap",
    "reference_pxap_counts",
    "reference_pxap_histograms",
]


def reference_iou_matrix(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """Inclusive IoU matrix (num_a, num_b) of integer boxes: ``+1`` in widths and
    heights, a denominator <= 0 gives 0."""
    a = np.asarray(box_a).reshape(-1, 1, 4)
    b = np.asarray(box_b).reshape(1, -1, 4)
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    den = area_a + area_b - inter
    bad = den <= 0
    den = np.where(bad, 1, den)
    ious = inter / den
    ious[bad] = 0
    return ious


def reference_boxes_at_threshold(
    scoremap: np.ndarray, threshold: float, multi_contour: bool
) -> np.ndarray:
    """The inclusive boxes wsolevaluation infers from a [0, 1] score map at one
    threshold: ``(k, 4)`` int64, ``[[0, 0, 0, 0]]`` when nothing is above it."""
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    _, binary = cv2.threshold(image, int(threshold * np.max(image)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    out = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        out.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return np.asarray(out, dtype=np.int64)


def reference_box_correct(
    scoremap: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds,
    iou_thresholds,
    multi_contour: bool = True,
) -> np.ndarray:
    """(n_thresholds, n_iou) bool: at each threshold, does the best IoU of the inferred
    boxes against the inclusive GT boxes reach each IoU threshold (fractions)?"""
    gt = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    iou_thr = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    out = np.zeros((len(thresholds), iou_thr.size), dtype=bool)
    for i, t in enumerate(thresholds):
        boxes = reference_boxes_at_threshold(scoremap, t, multi_contour)
        best = reference_iou_matrix(boxes, gt).max()
        out[i] = best >= iou_thr
    return out


def reference_pxap_histograms(
    scoremap: np.ndarray, mask: np.ndarray, thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """wsolevaluation's MaskEvaluator.accumulate: np.histogram of the scores at mask == 1
    and mask == 0 with edges ``thresholds + [1, 2, 3]``."""
    edges = np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
    ht, _ = np.histogram(scoremap[mask == 1], bins=edges)
    hf, _ = np.histogram(scoremap[mask == 0], bins=edges)
    return ht.astype(np.int64), hf.astype(np.int64)


def reference_pxap_counts(
    scoremap: np.ndarray, mask: np.ndarray, thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """Per-threshold counts, the plain way: ``tp[i] = #(score >= t_i at mask == 1)``,
    ``fp[i]`` the same at mask == 0 (ignore pixels left out)."""
    s = np.asarray(scoremap, dtype=np.float64)
    pos = s[mask == 1]
    neg = s[mask == 0]
    tp = np.array([(pos >= t).sum() for t in thresholds], dtype=np.int64)
    fp = np.array([(neg >= t).sum() for t in thresholds], dtype=np.int64)
    return tp, fp


def reference_pxap(hist_true: np.ndarray, hist_false: np.ndarray) -> float:
    """wsolevaluation's MaskEvaluator.compute (percent), from summed histograms."""
    ht = np.asarray(hist_true, dtype=np.float64)
    hf = np.asarray(hist_false, dtype=np.float64)
    num_true = ht.sum()
    tp = ht[::-1].cumsum()
    fn = num_true - tp
    fp = hf[::-1].cumsum()
    non_zero = (tp + fp) != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    return float((precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100)


def reference_cam2016_box(
    map2d: np.ndarray, threshold: float = 0.2, connectivity: int = 2
) -> np.ndarray:
    """The CAM 2016 box the plain way (regionprops, the first largest region): suite box
    of the largest connected component of ``map >= threshold * max``; the whole image
    when the maximum is not positive. (Equal-size ties may differ from `cam2016_box`.)"""
    m = np.asarray(map2d, dtype=np.float64)
    h, w = m.shape
    mx = m.max()
    if not mx > 0:
        return np.array([0.0, 0.0, w, h])
    props = measure.regionprops(measure.label(m >= threshold * mx, connectivity=connectivity))
    if not props:
        return np.array([0.0, 0.0, w, h])
    best = max(props, key=lambda p: p.area)
    y0, x0, y1, x1 = best.bbox
    return np.array([x0, y0, x1, y1], dtype=np.float64)
