"""The threshold sweep of wsolevaluation's box metrics (MaxBoxAcc, MaxBoxAccV2).

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
engine sweeps all levels at once with union-find (`sweep`): the foreground pass adds
pixels in decreasing value (8-connectivity) and tracks the components' boxes; the
background pass adds background pixels in increasing value (4-connectivity, plus a
virtual node for the image border) and tracks the holes' boxes. Both passes add their
pixels with the same code (`_make_pass` compiles it once per pass). For every IoU
threshold it keeps the number of current boxes that reach it (updated when a box is
created, grows or merges), so a level's correctness is known without looking at its
components again. Each threshold then reads its level's row. This gives the
multi-contour answer (MaxBoxAccV2).

MaxBoxAcc (V1) keeps only ``max(contours, key=cv2.contourArea)``, which has no cheap
closed form. It is read from the sweep when the answer does not depend on which contour
is the largest (no contour, one contour, or all / none of the level's boxes correct, or
area bounds that separate the right contours from the wrong ones); the remaining levels
call cv2 on that level's mask.

**Reference.** The numbers are identical to wsolevaluation's per-threshold cv2 loop
(``evaluation.py``'s ``BoxEvaluator``); `wsol.protocols.reference.reference_box_correct`
holds that loop and the tests compare the two on many random maps (equal, not close).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from wsol.protocols.components import _find

__all__ = [
    "MAX_IOU_THRESHOLDS",
    "LevelSweep",
    "box_correct_at_thresholds",
    "box_correct_u8",
    "levels_for_thresholds",
    "scoremap_to_uint8",
    "sweep",
    "threshold_list",
]

#: IoU thresholds one sweep tracks at most (bits of an int64; MaxBoxAcc's 0.5 included)
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


# ----------------------------------------------------------------------------------------
# the level sweep (numba)


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


def _make_pass(foreground: bool):
    """The compiled code of one pass of the sweep over all 256 levels.

    ``foreground=True``: pixels ``u8 > L`` added in decreasing value, 8-connectivity,
    component boxes, the V1 lower bounds (interior pixels) and the V1 decision of each
    level. ``False``: background pixels ``u8 <= L`` added in increasing value,
    4-connectivity, the border node ``BN`` (a background region joined to it is not a
    hole), hole boxes grown by one pixel, the holes' pixel counts and V1 bounds. Both
    passes are this one function body; the flag is a closure constant, so numba
    compiles each pass without the other's branches and each runs as fast as a
    hand-written loop. Per-pixel helpers returning many scalars were 30-40% slower, and
    a function per level 3-6% slower (numba increfs every array argument of a call)."""
    n_off = 8 if foreground else 4

    @njit(cache=True)
    def sweep_pass(
        start, order, parent, size, bx0, by0, bx1, by1, bits, corr, roots,
        live, lb, ub_a, ub_b, nb4, scan, gt, thr, k1, H, W, Wp, BN,
        n_regions, region_correct, n_hole, hole_correct, hole_pixels, hole_bounds, v1_state,
    ):  # fmt: skip
        """Fill ``n_regions[L]`` (components or holes of level L) and
        ``region_correct[L]`` (how many of their boxes reach each IoU threshold); the
        background pass also ``hole_pixels`` and ``hole_bounds`` (read by the
        foreground pass, with ``n_hole`` and ``hole_correct``), the foreground pass
        ``v1_state``."""
        track = k1 >= 0
        # the neighbours' offsets in the padded grid (a local array: passed in, the
        # foreground pass ran 2-4% slower)
        if foreground:
            offsets = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], np.int32)
        else:
            offsets = np.array([-Wp, -1, 1, Wp], np.int32)
        parent[:] = -1
        corr[:] = 0
        if not foreground:  # the padding cells belong to the border node
            for x in range(Wp):
                parent[x] = BN
                parent[(H + 1) * Wp + x] = BN
            for y in range(1, H + 1):
                parent[y * Wp] = BN
                parent[y * Wp + W + 1] = BN
            parent[BN] = BN
        count = 0  # components (foreground) or holes (background)
        nlive = 0  # length of the list of live roots (V1)
        in_holes = 0  # background: pixels in holes
        for step in range(256):
            if foreground:  # level L: add the pixels of value L + 1
                L = 255 - step
                lo = start[L + 1]
                hi = start[L + 2] if L < 255 else lo
            else:  # level L: add the pixels of value L
                L = step
                lo = start[L]
                hi = start[L + 1]
            for idx in range(lo, hi):
                p = order[idx]
                parent[p] = p
                size[p] = 1
                if foreground:
                    lb[p] = 0
                nr = 0
                border = False  # background: p touches the border's region
                c4 = 0  # foreground: p's 4-neighbours in the foreground
                inner = 0  # foreground: 4-neighbours that p makes interior
                for j in range(n_off):
                    q = p + offsets[j]
                    pq = parent[q]
                    if pq < 0:
                        continue
                    if foreground:
                        if track and (j == 1 or j == 3 or j == 4 or j == 6):
                            c4 += 1
                            nb4[q] += 1
                            if nb4[q] == 4:
                                inner += 1
                    elif pq == BN:
                        border = True
                        continue
                    if nr > 0 and pq == roots[nr - 1]:
                        continue  # q hangs right under the root just found
                    r = _find(parent, q)
                    if not foreground and r == BN:
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
                if border:  # the holes p touches join the border: holes no more
                    for i in range(nr):
                        r = roots[i]
                        _add_bits(corr, bits[r], -1)
                        in_holes -= size[r]
                        parent[r] = BN
                    parent[p] = BN
                    count -= nr
                    continue
                if not foreground:
                    in_holes += 1
                y = p // Wp - 1
                x = p - (y + 1) * Wp - 1
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
                else:  # a new region (nr == 0), or nr regions merged through p
                    main = p
                    x0 = x
                    x1 = x
                    y0 = y
                    y1 = y
                    total = 1
                    for i in range(nr):
                        r = roots[i]
                        total += size[r]
                        if foreground:
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
                    if foreground:
                        lb[main] = inner
                        inner = 0
                    bx0[main] = x0
                    bx1[main] = x1
                    by0[main] = y0
                    by1[main] = y1
                    count += 1 - nr
                    if main == p and track:
                        live[nlive] = p
                        nlive += 1
                if foreground and track:  # interior: all four 4-neighbours in the foreground
                    nb4[p] = c4
                    lb[main] += inner + (1 if c4 == 4 else 0)
                if grown:
                    if foreground:
                        b = _box_bits(
                            bx0[main],
                            by0[main],
                            min(bx1[main] + 1, W - 1),
                            min(by1[main] + 1, H - 1),
                            gt,
                            thr,
                        )
                    else:  # a hole's contour runs over the foreground pixels around it
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
            n_regions[L] = count
            region_correct[L, :] = corr
            if not track:
                continue
            if not foreground:
                hole_pixels[L] = in_holes
                if count == 0:
                    continue
                for i in range(nlive):  # the holes' bounds as of this level
                    r = live[i]
                    if parent[r] == r:
                        lb[r] = size[r]
                        ub_a[r] = (bx1[r] - bx0[r] + 2) * (by1[r] - by0[r] + 2)
                        ub_b[r] = ub_a[r]
                nlive = _scan_bounds(live, nlive, parent, lb, ub_a, ub_b, 0, bits, k1, scan)
                hole_bounds[L, :] = scan
                continue
            nc = count + n_hole[L]
            right = corr[k1] + hole_correct[L, k1]
            if nc == 0 or right == 0 or right == nc:
                continue  # decided by the counts alone (box_correct_u8)
            for i in range(nlive):
                r = live[i]
                if parent[r] == r:
                    ub_a[r] = (bx1[r] - bx0[r]) * (by1[r] - by0[r])
                    ub_b[r] = size[r]
            nlive = _scan_bounds(
                live, nlive, parent, lb, ub_a, ub_b, hole_pixels[L], bits, k1, scan
            )
            lb_t = max(scan[0], hole_bounds[L, 0])
            ub_t = max(scan[1], hole_bounds[L, 1])
            lb_f = max(scan[2], hole_bounds[L, 2])
            ub_f = max(scan[3], hole_bounds[L, 3])
            if lb_t > ub_f:
                v1_state[L] = 1
            elif lb_f > ub_t:
                v1_state[L] = 0

    return sweep_pass


_foreground_pass = _make_pass(True)
_background_pass = _make_pass(False)


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
    # the image border in the background pass (the padding cells point to it)
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

    n_comp = np.zeros(256, np.int64)
    n_hole = np.zeros(256, np.int64)
    comp_correct = np.zeros((256, K), np.int64)
    hole_correct = np.zeros((256, K), np.int64)

    # V1 bookkeeping: live roots, per-root lower bound and the two upper bounds
    live = np.empty(N, np.int32)
    lb = np.zeros(NP + 1, np.int64)
    ub_a = np.zeros(NP + 1, np.int64)
    ub_b = np.zeros(NP + 1, np.int64)
    nb4 = np.zeros(NP + 1, np.int8)
    hole_bounds = np.full((256, 4), -1, np.int64)
    hole_pixels = np.zeros(256, np.int64)
    scan = np.empty(4, np.int64)
    v1_state = np.full(256, -1, np.int8)

    # the background pass first: the foreground pass's V1 bounds need the holes' pixel
    # counts and bounds
    _background_pass(
        start, order, parent, size, bx0, by0, bx1, by1, bits, corr, roots,
        live, lb, ub_a, ub_b, nb4, scan, gt, thr, k1, H, W, Wp, BN,
        n_hole, hole_correct, n_hole, hole_correct, hole_pixels, hole_bounds, v1_state,
    )  # fmt: skip
    _foreground_pass(
        start, order, parent, size, bx0, by0, bx1, by1, bits, corr, roots,
        live, lb, ub_a, ub_b, nb4, scan, gt, thr, k1, H, W, Wp, BN,
        n_comp, comp_correct, n_hole, hole_correct, hole_pixels, hole_bounds, v1_state,
    )  # fmt: skip
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
