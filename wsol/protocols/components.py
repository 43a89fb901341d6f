"""Connected components of one binary mask, and the contour boxes OpenCV gives it.

**What it computes.** `connected_regions` labels a 2-D boolean mask by two-pass
union-find (1 = 4-neighbours, 2 = 8-neighbours) and numbers the labels in raster order
of their first pixel, exactly as scikit-image's ``measure.label(mask,
connectivity=...)`` does, with each label's pixel count and box (the tests compare
with ``measure.label`` / ``regionprops``). `contour_boxes` is ``cv2.boundingRect`` of
every contour ``cv2.findContours`` traces. `cam2016` takes its largest component;
`cam2016_official` (``dt_box``) boxes every contour. `_find` is the union-find root
lookup the box sweep (`wsol.protocols.box_sweep`) shares.
"""

from __future__ import annotations

import cv2
import numpy as np
from numba import njit

__all__ = ["connected_regions", "contour_boxes"]


@njit(cache=True)
def _find(parent, x):
    """Root of x's tree, halving the path on the way."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


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
