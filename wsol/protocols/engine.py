"""The threshold-sweep engine shared by the box protocols, and connected regions.

**What it computes.** wsolevaluation scores a score map ``s`` (values in [0, 1]) at many
thresholds ``t``: ``u8 = (s * 255).astype(uint8)``; the foreground is ``u8 > int(t *
u8.max())``; every contour ``cv2.findContours(fg, RETR_TREE, CHAIN_APPROX_SIMPLE)`` gives
one box ``x, y, w, h = cv2.boundingRect(c)`` -> ``[x, y, min(x + w, W - 1), min(y + h,
H - 1)]`` (inclusive, the wsolevaluation way); no contour gives ``[0, 0, 0, 0]``. The
map is correct at ``t`` for IoU threshold ``T`` when some box has IoU ``>= T`` with some
ground-truth box (inclusive IoU, ``+1`` in widths and heights).

The contour bounding rects of a binary mask are exactly (as a multiset):

- for every 8-connected foreground component, its bounding box
  (``x = xmin``, ``w = xmax - xmin + 1``, same for y);
- for every 4-connected background component that does not touch the image border
  (a *hole*), its bounding box grown by one pixel on each side
  (``x = hxmin - 1``, ``w = hxmax - hxmin + 3``, same for y).

A uint8 map has at most 256 distinct foregrounds ``u8 > L`` (``L = 0..255``), so the
engine sweeps all levels at once with union-find (`sweep`): pass 1 adds pixels in
decreasing value (8-connectivity) and tracks the components' boxes; pass 2 adds
background pixels in increasing value (4-connectivity, plus a virtual node for the
image border) and tracks the holes' boxes. For every IoU threshold it keeps the number
of current boxes that reach it (updated when a box is created, grows or merges), so a
level's correctness is known without looking at its components again. Each threshold
then reads its level's row. This gives the multi-contour answer (MaxBoxAccV2).

MaxBoxAcc (V1) keeps only ``max(contours, key=cv2.contourArea)``, which has no cheap
closed form. It is read from the sweep when the answer does not depend on which contour
is the largest (no contour, one contour, or all / none of the level's boxes correct);
the remaining levels call cv2 on that level's mask, so the numbers are identical to
wsolevaluation's loop (`wsol.protocols.reference` holds that loop; the tests compare).

Also here: the PxAP score histograms (`pxap_histograms`, exactly ``np.histogram``'s
binning) and connected regions of one binary mask (`connected_regions`, numbered as
scikit-image's ``measure.label``; `contour_boxes`), used by `cam2016` and
`cam2016_official`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

__all__ = [
    "LevelSweep",
    "box_correct_at_thresholds",
    "box_correct_u8",
    "connected_regions",
    "contour_boxes",
    "levels_for_thresholds",
    "pxap_edges",
    "pxap_from_histograms",
    "pxap_histograms",
    "region_rects",
    "scoremap_to_uint8",
    "sweep",
    "threshold_list",
]

MAX_IOU_THRESHOLDS = 62


# ----------------------------------------------------------------------------------------
# small helpers with wsolevaluation's exact arithmetic


def threshold_list(interval: float) -> np.ndarray:
    """wsolevaluation's score-map thresholds, ``np.arange(0, 1, interval)`` (float64)."""
    return np.arange(0, 1, interval)


def scoremap_to_uint8(scoremap: np.ndarray) -> np.ndarray:
    """``(scoremap * 255).astype(np.uint8)``: truncation, so 0.999 -> 254."""
    return (np.asarray(scoremap) * 255).astype(np.uint8)


def levels_for_thresholds(thresholds: np.ndarray, max_u8: int) -> np.ndarray:
    """``int(t * max_u8)`` for every threshold (float64 product, truncated): the
    foreground at threshold ``t`` is ``u8 > level``."""
    prod = np.asarray(thresholds, dtype=np.float64) * np.float64(max_u8)
    return np.trunc(prod).astype(np.int64)


def pxap_edges(thresholds: np.ndarray) -> np.ndarray:
    """wsolevaluation's histogram edges: the thresholds, then 1.0, 2.0, 3.0 (bins
    ``[t_i, t_i+1)``, ..., ``[1, 2)``, ``[2, 3]``)."""
    return np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------------------
# the level sweep (numba)


@njit(cache=True)
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def _box_bits(x0, y0, x1, y1, gt, thr):
    """Bit k set when the inclusive box reaches IoU >= thr[k] with some GT box (IoU as
    wsolevaluation's calculate_multiple_iou: int areas, a denominator <= 0 gives 0)."""
    best = 0.0
    area_a = (x1 - x0 + 1) * (y1 - y0 + 1)
    for g in range(gt.shape[0]):
        iw = min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1
        ih = min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1
        if iw < 0:
            iw = 0
        if ih < 0:
            ih = 0
        inter = iw * ih
        area_b = (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1)
        den = area_a + area_b - inter
        iou = 0.0
        if den > 0:
            iou = inter / den
        if iou > best:
            best = iou
    bits = 0
    for k in range(thr.shape[0]):
        if best >= thr[k]:
            bits |= 1 << k
    return bits


@njit(cache=True)
def _add_bits(corr, bits, sign):
    k = 0
    while bits:
        if bits & 1:
            corr[k] += sign
        bits >>= 1
        k += 1


@njit(cache=True)
def _scan_bounds(live, nlive, parent, lb, ub_a, ub_b, extra, bits, k1, out):
    """Compact the list of live roots (``parent[r] == r``) and write the V1 area bounds
    of their contours: out = (max LB of the contours right at IoU bit k1, max UB of the
    right ones, max LB of the wrong ones, max UB of the wrong ones). A contour's UB is
    ``min(ub_a, ub_b + extra)``. Returns the new length of the list."""
    n = 0
    out[:] = -1
    for i in range(nlive):
        r = live[i]
        if parent[r] != r:
            continue
        live[n] = r
        n += 1
        u = min(ub_a[r], ub_b[r] + extra)
        j = 0 if (bits[r] >> k1) & 1 else 2
        if lb[r] > out[j]:
            out[j] = lb[r]
        if u > out[j + 1]:
            out[j + 1] = u
    return n


@njit(cache=True)
def _sweep_levels(u8, gt, thr, k1):
    """See `sweep`. Returns (n_comp, n_hole, comp_correct, hole_correct, empty_bits,
    v1_state): v1_state[L] is 1 / 0 when the largest contour (cv2.contourArea) of level
    L is known to be right / wrong at IoU bit ``k1`` from area bounds alone, -1 when the
    bounds do not tell (or ``k1 < 0``).

    Area bounds (the contour polygon runs through the centres of border pixels, so it
    never crosses the open square of any other pixel): a component's outer contour
    encloses at least its interior pixels (all four 4-neighbours in the foreground) and at
    most its pixels plus the holes' pixels, and at most its pixel centres' bounding box;
    a hole's contour encloses at least the hole's pixels and at most the bounding box of
    the foreground pixel centres around it."""
    H, W = u8.shape
    N = H * W
    K = thr.shape[0]
    # a padded grid (one cell around the image) saves the bounds checks; node BN is
    # the image border in pass 2 (the padding cells point to it)
    Wp = W + 2
    NP = (H + 2) * Wp
    BN = NP

    # counting sort: order[start[v]:start[v + 1]] = padded indices of the pixels of
    # value v, in raster order
    start = np.zeros(258, np.int64)
    for y in range(H):
        for x in range(W):
            start[u8[y, x] + 1] += 1
    for v in range(256):
        start[v + 1] += start[v]
    fill = start[:256].copy()
    order = np.empty(N, np.int32)
    for y in range(H):
        for x in range(W):
            v = u8[y, x]
            order[fill[v]] = (y + 1) * Wp + x + 1
            fill[v] += 1

    parent = np.empty(NP + 1, np.int32)
    size = np.zeros(NP + 1, np.int64)
    bx0 = np.empty(NP + 1, np.int32)
    by0 = np.empty(NP + 1, np.int32)
    bx1 = np.empty(NP + 1, np.int32)
    by1 = np.empty(NP + 1, np.int32)
    bits = np.zeros(NP + 1, np.int64)
    roots = np.empty(8, np.int32)
    corr = np.zeros(K, np.int64)
    off8 = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], np.int32)
    off4 = np.array([-Wp, -1, 1, Wp], np.int32)

    n_comp = np.zeros(256, np.int64)
    n_hole = np.zeros(256, np.int64)
    comp_correct = np.zeros((256, K), np.int64)
    hole_correct = np.zeros((256, K), np.int64)

    # V1 bookkeeping: live roots, per-root lower bound and the two upper bounds
    track = k1 >= 0
    live = np.empty(N, np.int32)
    lb = np.zeros(NP + 1, np.int64)
    ub_a = np.zeros(NP + 1, np.int64)
    ub_b = np.zeros(NP + 1, np.int64)
    nb4 = np.zeros(NP + 1, np.int8)
    hole_bounds = np.full((256, 4), -1, np.int64)
    hole_pixels = np.zeros(256, np.int64)
    scan = np.empty(4, np.int64)
    v1_state = np.full(256, -1, np.int8)

    # ---- pass 2 (first: pass 1's bounds need the holes' pixel counts): background
    # u8 <= L, pixels added in increasing value, 4-connectivity; a background component
    # joined to the border node BN is not a hole
    parent[:] = -1
    for x in range(Wp):
        parent[x] = BN
        parent[(H + 1) * Wp + x] = BN
    for y in range(1, H + 1):
        parent[y * Wp] = BN
        parent[y * Wp + W + 1] = BN
    parent[BN] = BN
    nhole = 0
    nlive = 0
    in_holes = 0
    for L in range(256):
        for idx in range(start[L], start[L + 1]):
            p = order[idx]
            parent[p] = p
            size[p] = 1
            nr = 0
            border = False
            for j in range(4):
                q = p + off4[j]
                pq = parent[q]
                if pq < 0:
                    continue
                if pq == BN:
                    border = True
                    continue
                if nr > 0 and pq == roots[nr - 1]:
                    continue
                r = _find(parent, q)
                if r == BN:
                    border = True
                    continue
                seen = False
                for i in range(nr):
                    if roots[i] == r:
                        seen = True
                        break
                if not seen:
                    roots[nr] = r
                    nr += 1
            if border:
                for i in range(nr):
                    r = roots[i]
                    _add_bits(corr, bits[r], -1)
                    in_holes -= size[r]
                    parent[r] = BN
                parent[p] = BN
                nhole -= nr
                continue
            in_holes += 1
            y = p // Wp - 1
            x = p - (y + 1) * Wp - 1
            if nr == 1:
                r = roots[0]
                parent[p] = r
                size[r] += 1
                if bx0[r] <= x <= bx1[r] and by0[r] <= y <= by1[r]:
                    continue
                _add_bits(corr, bits[r], -1)
                bx0[r] = min(bx0[r], x)
                bx1[r] = max(bx1[r], x)
                by0[r] = min(by0[r], y)
                by1[r] = max(by1[r], y)
                main = r
            else:
                main = p
                x0 = x
                x1 = x
                y0 = y
                y1 = y
                total = 1
                for i in range(nr):
                    r = roots[i]
                    total += size[r]
                    if size[r] > size[main]:
                        main = r
                    x0 = min(x0, bx0[r])
                    x1 = max(x1, bx1[r])
                    y0 = min(y0, by0[r])
                    y1 = max(y1, by1[r])
                    _add_bits(corr, bits[r], -1)
                for i in range(nr):
                    r = roots[i]
                    if r != main:
                        parent[r] = main
                parent[p] = main
                size[main] = total
                bx0[main] = x0
                bx1[main] = x1
                by0[main] = y0
                by1[main] = y1
                nhole += 1 - nr
                if main == p and track:
                    live[nlive] = p
                    nlive += 1
            # a hole's contour runs over the foreground pixels around it
            b = _box_bits(
                bx0[main] - 1,
                by0[main] - 1,
                min(bx1[main] + 2, W - 1),
                min(by1[main] + 2, H - 1),
                gt,
                thr,
            )
            bits[main] = b
            _add_bits(corr, b, 1)
        n_hole[L] = nhole
        hole_correct[L, :] = corr
        hole_pixels[L] = in_holes
        if track and nhole > 0:
            for i in range(nlive):  # the holes' bounds as of this level
                r = live[i]
                if parent[r] == r:
                    lb[r] = size[r]
                    ub_a[r] = (bx1[r] - bx0[r] + 2) * (by1[r] - by0[r] + 2)
                    ub_b[r] = ub_a[r]
            nlive = _scan_bounds(live, nlive, parent, lb, ub_a, ub_b, 0, bits, k1, scan)
            hole_bounds[L, :] = scan

    # ---- pass 1: foreground u8 > L, pixels added in decreasing value, 8-connectivity
    parent[:] = -1
    corr[:] = 0
    ncomp = 0
    nlive = 0
    for L in range(255, -1, -1):
        v = L + 1
        if v <= 255:
            for idx in range(start[v], start[v + 1]):
                p = order[idx]
                y = p // Wp - 1
                x = p - (y + 1) * Wp - 1
                parent[p] = p
                size[p] = 1
                lb[p] = 0
                nr = 0
                c4 = 0  # foreground 4-neighbours of p
                inner = 0  # 4-neighbours that p makes interior
                for j in range(8):
                    q = p + off8[j]
                    pq = parent[q]
                    if pq < 0:
                        continue
                    if track and (j == 1 or j == 3 or j == 4 or j == 6):
                        c4 += 1
                        nb4[q] += 1
                        if nb4[q] == 4:
                            inner += 1
                    if nr > 0 and pq == roots[nr - 1]:
                        continue  # q hangs right under the root just found
                    r = _find(parent, q)
                    seen = False
                    for i in range(nr):
                        if roots[i] == r:
                            seen = True
                            break
                    if not seen:
                        roots[nr] = r
                        nr += 1
                grown = True
                if nr == 1:
                    r = roots[0]
                    parent[p] = r
                    size[r] += 1
                    main = r
                    if bx0[r] <= x <= bx1[r] and by0[r] <= y <= by1[r]:
                        grown = False
                    else:
                        _add_bits(corr, bits[r], -1)
                        bx0[r] = min(bx0[r], x)
                        bx1[r] = max(bx1[r], x)
                        by0[r] = min(by0[r], y)
                        by1[r] = max(by1[r], y)
                else:
                    main = p
                    x0 = x
                    x1 = x
                    y0 = y
                    y1 = y
                    total = 1
                    for i in range(nr):
                        r = roots[i]
                        total += size[r]
                        inner += lb[r]
                        if size[r] > size[main]:
                            main = r
                        x0 = min(x0, bx0[r])
                        x1 = max(x1, bx1[r])
                        y0 = min(y0, by0[r])
                        y1 = max(y1, by1[r])
                        _add_bits(corr, bits[r], -1)
                    for i in range(nr):
                        r = roots[i]
                        if r != main:
                            parent[r] = main
                    parent[p] = main
                    size[main] = total
                    lb[main] = inner
                    inner = 0
                    bx0[main] = x0
                    bx1[main] = x1
                    by0[main] = y0
                    by1[main] = y1
                    ncomp += 1 - nr
                    if main == p and track:
                        live[nlive] = p
                        nlive += 1
                if track:  # interior pixels: all four 4-neighbours in the foreground
                    nb4[p] = c4
                    lb[main] += inner + (1 if c4 == 4 else 0)
                if grown:
                    b = _box_bits(
                        bx0[main],
                        by0[main],
                        min(bx1[main] + 1, W - 1),
                        min(by1[main] + 1, H - 1),
                        gt,
                        thr,
                    )
                    bits[main] = b
                    _add_bits(corr, b, 1)
        n_comp[L] = ncomp
        comp_correct[L, :] = corr
        if not track:
            continue
        nc = ncomp + n_hole[L]
        right = corr[k1] + hole_correct[L, k1]
        if nc == 0 or right == 0 or right == nc:
            continue  # decided by the counts alone (box_correct_u8)
        for i in range(nlive):
            r = live[i]
            if parent[r] == r:
                ub_a[r] = (bx1[r] - bx0[r]) * (by1[r] - by0[r])
                ub_b[r] = size[r]
        nlive = _scan_bounds(live, nlive, parent, lb, ub_a, ub_b, hole_pixels[L], bits, k1, scan)
        lb_t = max(scan[0], hole_bounds[L, 0])
        ub_t = max(scan[1], hole_bounds[L, 1])
        lb_f = max(scan[2], hole_bounds[L, 2])
        ub_f = max(scan[3], hole_bounds[L, 3])
        if lb_t > ub_f:
            v1_state[L] = 1
        elif lb_f > ub_t:
            v1_state[L] = 0

    empty_bits = _box_bits(0, 0, 0, 0, gt, thr)
    return n_comp, n_hole, comp_correct, hole_correct, empty_bits, v1_state


@dataclass(frozen=True)
class LevelSweep:
    """Per level ``L = 0..255`` (foreground ``u8 > L``) of one uint8 map.

    n_components, n_holes: (256,) contour counts (``n_contours`` is their sum).
    n_correct: (256, K) number of contour boxes reaching IoU threshold k.
    empty_correct: (K,) whether the ``[0, 0, 0, 0]`` box (no contour) reaches it.
    largest_state: (256,) int8, for the IoU threshold ``largest_bit`` of `sweep`: 1 / 0
        where the level's largest contour is known to be right / wrong from area bounds,
        -1 where cv2 must say.
    """

    n_components: np.ndarray
    n_holes: np.ndarray
    n_correct: np.ndarray
    empty_correct: np.ndarray
    largest_state: np.ndarray | None = None

    @property
    def n_contours(self) -> np.ndarray:
        return self.n_components + self.n_holes

    @property
    def correct(self) -> np.ndarray:
        """(256, K) bool: some box of the level reaches IoU threshold k (multi-contour)."""
        out = self.n_correct > 0
        empty = self.n_contours == 0
        out[empty] = self.empty_correct[None, :]
        return out


def _check_iou_thresholds(iou_thresholds) -> np.ndarray:
    thr = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if thr.size > MAX_IOU_THRESHOLDS:
        raise ValueError(f"at most {MAX_IOU_THRESHOLDS} IoU thresholds, got {thr.size}")
    return thr


def sweep(
    u8: np.ndarray, gt_boxes: np.ndarray, iou_thresholds, largest_bit: int = -1
) -> LevelSweep:
    """Sweep all 256 levels of a uint8 map against inclusive integer GT boxes (G, 4)
    with IoU thresholds given as fractions (e.g. ``[0.3, 0.5, 0.7]``). With
    ``largest_bit = k`` it also decides, where area bounds can, whether each level's
    largest contour reaches ``iou_thresholds[k]`` (`LevelSweep.largest_state`)."""
    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    if u8.ndim != 2:
        raise ValueError(f"sweep needs a 2-D map, got shape {u8.shape}")
    gt = np.ascontiguousarray(np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4))
    thr = _check_iou_thresholds(iou_thresholds)
    n_comp, n_hole, cc, hc, empty_bits, v1_state = _sweep_levels(u8, gt, thr, int(largest_bit))
    empty = np.array([(int(empty_bits) >> k) & 1 == 1 for k in range(thr.size)], dtype=bool)
    return LevelSweep(n_comp, n_hole, cc + hc, empty, v1_state)


def _iou_rows(box: np.ndarray, gt: np.ndarray) -> float:
    """Best inclusive IoU of one box against GT boxes (wsolevaluation arithmetic)."""
    b = np.asarray(box, dtype=np.int64)
    iw = np.maximum(0, np.minimum(b[2], gt[:, 2]) - np.maximum(b[0], gt[:, 0]) + 1)
    ih = np.maximum(0, np.minimum(b[3], gt[:, 3]) - np.maximum(b[1], gt[:, 1]) + 1)
    inter = iw * ih
    area_a = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    area_b = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    den = area_a + area_b - inter
    ious = np.where(den > 0, inter / np.where(den > 0, den, 1), 0.0)
    return float(ious.max()) if ious.size else 0.0


def _largest_contour_box(fg_u8: np.ndarray) -> np.ndarray:
    """wsolevaluation's single box: ``max(contours, key=cv2.contourArea)``'s rect."""
    h, w = fg_u8.shape
    contours = cv2.findContours(fg_u8, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.zeros(4, dtype=np.int64)
    c = max(contours, key=cv2.contourArea)
    x, y, bw, bh = cv2.boundingRect(c)
    return np.array([x, y, min(x + bw, w - 1), min(y + bh, h - 1)], dtype=np.int64)


def box_correct_at_thresholds(
    scoremap: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: np.ndarray,
    iou_thresholds,
    *,
    largest_iou: float | None = 0.5,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Correctness of one score map at every threshold, as wsolevaluation scores it.

    Args:
        scoremap: (H, W) float map in [0, 1] (converted with `scoremap_to_uint8`).
        gt_boxes: (G, 4) inclusive integer GT boxes in the map's coordinates.
        thresholds: the score-map thresholds (e.g. `threshold_list`).
        iou_thresholds: fractions, for the multi-contour (V2) answer.
        largest_iou: IoU threshold of the largest-contour (V1) answer; None skips it.

    Returns:
        v2: (n_thresholds, K) bool; v1: (n_thresholds,) bool or None.
    """
    u8 = scoremap_to_uint8(scoremap)
    return box_correct_u8(u8, gt_boxes, thresholds, iou_thresholds, largest_iou=largest_iou)


def box_correct_u8(
    u8: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: np.ndarray,
    iou_thresholds,
    *,
    largest_iou: float | None = 0.5,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`box_correct_at_thresholds` for a map already converted to uint8."""
    thr = list(_check_iou_thresholds(iou_thresholds))
    k1 = None
    if largest_iou is not None:
        if largest_iou in thr:
            k1 = thr.index(largest_iou)
        else:
            thr.append(float(largest_iou))
            k1 = len(thr) - 1
    gt = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    sw = sweep(u8, gt, thr, -1 if k1 is None else k1)
    levels = levels_for_thresholds(thresholds, int(u8.max()))
    n_v2 = len(iou_thresholds) if np.ndim(iou_thresholds) else 1
    v2 = sw.correct[levels][:, :n_v2]
    if k1 is None:
        return v2, None
    n_cont = sw.n_contours
    n_corr = sw.n_correct[:, k1]
    per_level = np.zeros(256, dtype=bool)
    for level in np.unique(levels):
        nc = n_cont[level]
        if nc == 0:
            per_level[level] = sw.empty_correct[k1]
        elif n_corr[level] == 0:
            per_level[level] = False
        elif n_corr[level] == nc:
            per_level[level] = True
        elif sw.largest_state[level] >= 0:  # the area bounds tell which is the largest
            per_level[level] = bool(sw.largest_state[level])
        else:  # several contours of close areas, some right: cv2 decides
            fg = np.where(u8 > level, np.uint8(255), np.uint8(0))
            box = _largest_contour_box(fg)
            per_level[level] = _iou_rows(box, gt) >= largest_iou
    return v2, per_level[levels]


# ----------------------------------------------------------------------------------------
# PxAP histograms


@njit(cache=True)
def _hist(values, labels, edges, inv_step, hist_true, hist_false):
    n_edges = edges.shape[0]
    last = n_edges - 2  # the last bin, closed on the right
    lo_edge = edges[0]
    hi_edge = edges[n_edges - 1]
    for i in range(values.shape[0]):
        lab = labels[i]
        if lab != 0 and lab != 1:
            continue
        v = values[i]
        if not (v >= lo_edge and v <= hi_edge):
            continue
        # bin b with edges[b] <= v < edges[b + 1]: a guess from the (nearly uniform)
        # threshold spacing, then exact comparisons with the edges themselves
        g = (v - lo_edge) * inv_step
        b = int(g) if g < last else last
        while b > 0 and edges[b] > v:
            b -= 1
        while b < last and edges[b + 1] <= v:
            b += 1
        if lab == 1:
            hist_true[b] += 1
        else:
            hist_false[b] += 1


def pxap_histograms(
    scoremap: np.ndarray, mask: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms (int64, ``len(edges) - 1`` bins) of the score-map values at mask == 1
    and at mask == 0 (other values, e.g. 255 = ignore, are left out), binned exactly as
    ``np.histogram(values, bins=edges)``."""
    values = np.ascontiguousarray(np.asarray(scoremap, dtype=np.float64).ravel())
    labels = np.ascontiguousarray(np.asarray(mask, dtype=np.uint8).ravel())
    if values.shape != labels.shape:
        raise ValueError(f"score map {np.shape(scoremap)} and mask {np.shape(mask)} differ in size")
    e = np.ascontiguousarray(edges, dtype=np.float64)
    ht = np.zeros(e.size - 1, dtype=np.int64)
    hf = np.zeros(e.size - 1, dtype=np.int64)
    n_thr = max(e.size - 3, 1)  # edges below 1.0
    span = e[n_thr] - e[0] if e.size > 3 else 1.0
    inv_step = n_thr / span if span > 0 else 0.0
    _hist(values, labels, e, inv_step, ht, hf)
    return ht, hf


def pxap_from_histograms(
    hist_true: np.ndarray, hist_false: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """wsolevaluation's MaskEvaluator.compute: (PxAP in percent, precision, recall), with
    precision/recall ordered from the highest bin down (index 0: scores >= 2.0)."""
    ht = np.asarray(hist_true, dtype=np.float64)
    hf = np.asarray(hist_false, dtype=np.float64)
    num_true = ht.sum()
    tp = ht[::-1].cumsum()
    fp = hf[::-1].cumsum()
    fn = num_true - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    if num_true <= 0 or not ((tp + fp) > 0).any():
        return float("nan"), precision, recall
    non_zero = (tp + fp) != 0
    auc = (precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100
    return float(auc), precision, recall


# ----------------------------------------------------------------------------------------
# connected regions of one binary mask


@njit(cache=True)
def _join(parent, p, q):
    """Union of p's tree and q's tree; the smaller index (first in raster order) is the
    root."""
    rp = _find(parent, p)
    rq = _find(parent, q)
    if rq < rp:
        parent[rp] = rq
    elif rp < rq:
        parent[rq] = rp


@njit(cache=True)
def _label(mask, conn8):
    """Two-pass union-find labelling; labels numbered in raster order of their first
    pixel (as scikit-image's measure.label), with areas and inclusive extents."""
    H, W = mask.shape
    N = H * W
    parent = np.empty(N, np.int32)
    for y in range(H):
        for x in range(W):
            p = y * W + x
            if not mask[y, x]:
                parent[p] = -1
                continue
            parent[p] = p
            up = y > 0 and mask[y - 1, x]
            left = x > 0 and mask[y, x - 1]
            if conn8:
                # the pixels visited before p that touch it are up-left, up, up-right and
                # left; up touches all the others, and left touches up-left
                if up:
                    parent[p] = _find(parent, p - W)
                    continue
                if left:
                    parent[p] = _find(parent, p - 1)
                elif x > 0 and y > 0 and mask[y - 1, x - 1]:
                    parent[p] = _find(parent, p - W - 1)
                if x + 1 < W and y > 0 and mask[y - 1, x + 1]:
                    _join(parent, p, p - W + 1)
            else:
                if up:
                    parent[p] = _find(parent, p - W)
                    if left:
                        _join(parent, p, p - 1)
                elif left:
                    parent[p] = _find(parent, p - 1)
    n_roots = 0
    for p in range(N):
        if parent[p] == p:
            n_roots += 1
    labels = np.zeros(N, np.int32)
    areas = np.zeros(n_roots + 1, np.int64)
    x0 = np.zeros(n_roots + 1, np.int64)
    y0 = np.zeros(n_roots + 1, np.int64)
    x1 = np.zeros(n_roots + 1, np.int64)
    y1 = np.zeros(n_roots + 1, np.int64)
    n = 0
    for y in range(H):
        for x in range(W):
            p = y * W + x
            r = parent[p]
            if r < 0:
                continue
            if r == p:  # a root: the first pixel of its component in raster order
                n += 1
                lab = n
                x0[n] = x
                x1[n] = x
                y0[n] = y
                y1[n] = y
            else:
                # roots come first in raster order, so r's label is known; flatten
                r = _find(parent, p)
                parent[p] = r
                lab = labels[r]
            labels[p] = lab
            areas[lab] += 1
            if x < x0[lab]:
                x0[lab] = x
            if x > x1[lab]:
                x1[lab] = x
            if y > y1[lab]:
                y1[lab] = y
    return (
        labels.reshape(H, W),
        n,
        areas[1 : n + 1],
        x0[1 : n + 1],
        y0[1 : n + 1],
        x1[1 : n + 1],
        y1[1 : n + 1],
    )


def connected_regions(
    mask: np.ndarray, connectivity: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected components of a 2-D boolean mask, numbered as scikit-image's
    ``measure.label(mask, connectivity=connectivity)`` numbers them (1 = 4-neighbours,
    2 = 8-neighbours; labels in raster order of their first pixel; the tests check the
    equality).

    Returns ``labels`` (H, W) int32 (0 = background), ``areas`` (n,) pixel counts and
    ``boxes`` (n, 4) suite-convention boxes (``[xmin, ymin, xmax + 1, ymax + 1]``); row i
    is label i + 1.
    """
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    if m.ndim != 2:
        raise ValueError(f"connected_regions needs a 2-D mask, got shape {m.shape}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 or 2, got {connectivity}")
    labels, _, areas, x0, y0, x1, y1 = _label(m, connectivity == 2)
    boxes = np.stack([x0, y0, x1 + 1, y1 + 1], axis=1).astype(np.float64)
    return labels, areas, boxes


def contour_boxes(mask: np.ndarray, mode: int = cv2.RETR_CCOMP) -> np.ndarray:
    """``cv2.boundingRect`` of every contour of a binary mask, ``(n, 4)`` int64 rows
    ``(x, y, w, h)`` in cv2's contour order (outer borders and, for RETR_CCOMP/TREE,
    hole borders)."""
    m = np.ascontiguousarray(np.asarray(mask).astype(bool).astype(np.uint8) * 255)
    contours = cv2.findContours(m, mode, cv2.CHAIN_APPROX_SIMPLE)[0]
    out = np.zeros((len(contours), 4), dtype=np.int64)
    for i, c in enumerate(contours):
        out[i] = cv2.boundingRect(c)
    return out


def region_rects(mask: np.ndarray) -> np.ndarray:
    """The contour rects of `contour_boxes` computed from connected regions (the closed
    form the sweep uses): 8-connected foreground components, plus 4-connected
    background components off the border grown by one pixel. (n, 4) ``(x, y, w, h)``,
    components first (raster order), then holes; used by the tests."""
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
