"""CAM 2016 as CSAILVision released it (``zhoubolei/CAM``): the ``bboxgenerator/dt_box``
program on heatmaps written by ``ILSVRC_generate_heatmap.m``, scored by
``ILSVRC_evaluate_bbox.m`` with the ILSVRC devkit.

The pipeline, step by step (what the released code does, and what is decided here):

1. **Heatmap.** The class's raw map is upsampled bilinearly to the original image size
   (the release resized the 10-crop-merged map with MATLAB's ``imresize``, bicubic
   by default; the suite's localizers give one map, resized bilinearly as cam2016
   does). ``ILSVRC_generate_heatmap.m`` divides by the maximum (``map ./ max(map(:))``,
   not min-max) and ``imwrite``s it, i.e. MATLAB's ``im2uint8``: saturate to [0, 1],
   ``uint8(255 * x + 0.5)`` (float32 here). The JPEG compression of the written file
   (and its decoding back to grey) is not reproduced. A map whose maximum is ``<= 0`` or
   not finite has no region.
2. **Per threshold** ``th`` of ``thresholds`` (20, 100, 110; ``dt_box`` silently uses
   30, 90, 150 unless ``0 < t0 < t1 < t2 < 255``, reproduced with a warning):
   ``cvThreshold(gray, th, 255, BINARY)`` i.e. foreground ``u8 > th``; ``dt_binary``:
   the exact Euclidean distance of each foreground pixel to the nearest background pixel
   inside the image (``dt.c``'s lower envelope, re-implemented with its arithmetic; equal
   to ``scipy.ndimage.distance_transform_edt``), scaled as ``(int)(d * (255.0 / max) +
   0.5)`` clamped to 0..255,
   left unchanged when all pixels are equal (an all-foreground mask stays foreground,
   an empty one empty); then keep ``> dt_keep`` (10).
3. **Contours**: ``findContours(CV_RETR_CCOMP)``, one box per contour (outer borders
   *and* hole borders) from ``boundingRect``, clamped as ``LIMIT``:
   ``x in [0, W-5]``, ``w in [0, W - bb.x - 5]``, same for y (``LIMIT(v, L, R)`` returns
   ``R`` when ``R < L``, so a box starting within 5 pixels of the right or bottom edge
   gets a negative width or height, reproduced). The release was built
   against OpenCV 2.x (C API, ``pkg-config opencv``), whose ``cvFindContours`` zeroes
   the image's 1-pixel frame before tracing; modern cv2 pads instead. With
   ``opencv2_border=True`` (default) the frame is zeroed first, as 2.x did.
4. ``rankBBox``: sort by area ``w * h``, descending. ``std::sort`` is unstable; here the
   sort is stable (ties keep cv2's contour order, scales in threshold order).
5. ``mergeBBox``: for ``i`` ascending, for ``j > i``: erase box ``j`` when the overlap
   of ``[x, x + w) x [y, y + h)`` exceeds ``int(max(area_i, area_j) * 0.5)``; after an
   erase the index still advances, so the box that moved into place ``j`` is not
   compared with ``i`` (reproduced; e.g. a region found at all three thresholds keeps two
   of its three copies, so box 2 can repeat box 1).
6. Boxes are written as ``x y w h`` and read as ``[x, y, x + w, y + h]``, then ordered
   per coordinate (``min``/``max`` of the corners, ``ILSVRC_evaluate_bbox.m``).

**Coordinates and IoU.** Boxes are 0-based pixel indices (OpenCV's), taken as the
devkit's inclusive boxes ``[x0, y0, x1, y1]`` (so a box covers ``w + 1`` columns, as in
the release) and scored with the devkit's ``+1`` IoU against the ground truth converted
by `to_inclusive` (0-based as well). In the suite convention (predictions.csv) a box
is ``[x, y, x + w + 1, y + h + 1]``.

**Guesses.** First guess = box 1, second = box 2 (box 1 again when there is only one;
the MATLAB script would fail there). A map with no box gives the whole image
``[0, 0, W - 1, H - 1]``; ``official_empty_map_rate`` reports how often (percent of
the maps boxed). Metrics (percent): ``official_loc_top1_err`` (box 1 of the top-1
class), ``official_loc_top5_err`` (box 1 of each top-5 class),
``official_loc_top5_err_combined`` (the paper's test-set heuristic: box 1 and 2 of the
top-1 class, box 1 and 2 of the top-2 class, box 1 of the top-3 class),
``official_gt_known_loc`` (box 1 of the ground-truth class), ``official_mean_iou``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from wsol.protocols import settings
from wsol.protocols.boxes import from_inclusive, iou_inclusive, to_inclusive
from wsol.protocols.cam2016 import (
    class_columns,
    score_inputs,
    upsample_maps,
)
from wsol.protocols.components import contour_boxes
from wsol.protocols.metric import (
    IOU_SCALE,
    ProtocolMetric,
    batch_column,
    box_text,
    iou_fixed,
)

__all__ = [
    "DT_BOX_DEFAULT_THRESHOLDS",
    "Cam2016OfficialMetric",
    "big_overlap",
    "dt_box",
    "dt_keep_mask",
    "limit_rect",
    "merge_boxes",
    "official_boxes",
    "official_heatmap",
    "rank_boxes",
]

DT_BOX_DEFAULT_THRESHOLDS = (30, 90, 150)


def official_heatmap(map2d: np.ndarray) -> np.ndarray | None:
    """The uint8 heatmap the release wrote: ``map / max``, saturated to [0, 1],
    ``uint8(255 * x + 0.5)`` (float32). None when the maximum is ``<= 0`` or not finite."""
    m = np.asarray(map2d, dtype=np.float32)
    if m.size == 0:
        return None
    mx = m.max()
    if not np.isfinite(mx) or mx <= 0:
        return None
    with np.errstate(invalid="ignore"):
        x = np.clip(m / mx, np.float32(0), np.float32(1))
    x = np.nan_to_num(x, nan=0.0)
    return np.floor(x * np.float32(255) + np.float32(0.5)).astype(np.uint8)


_INF = 1e20  # dt.c's INF


@njit(cache=True)
def _envelope(f, n, d, z, v):
    """Squared distances d[q] = min_p (q - p)^2 + f[p] along one line, by the lower
    envelope of parabolas (Felzenszwalb & Huttenlocher), with dt.c's arithmetic."""
    k = 0
    v[0] = 0
    z[0] = -_INF
    z[1] = _INF
    for q in range(1, n):
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        while s <= z[k]:
            k -= 1
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = _INF
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        d[q] = (q - v[k]) * (q - v[k]) + f[v[k]]


@njit(cache=True)
def _dt_binary(fg, dt_keep):
    """dt.c's dt_binary on a boolean mask (foreground = 255), then ``> dt_keep``."""
    rows, cols = fg.shape
    n = max(rows, cols)
    m = np.empty((rows, cols))
    for i in range(rows):
        for j in range(cols):
            m[i, j] = _INF if fg[i, j] else 0.0
    f = np.empty(n)
    d = np.empty(n)
    z = np.empty(n + 1)
    v = np.empty(n, np.int64)
    for x in range(cols):
        for y in range(rows):
            f[y] = m[y, x]
        _envelope(f, rows, d, z, v)
        for y in range(rows):
            m[y, x] = d[y]
    for y in range(rows):
        for x in range(cols):
            f[x] = m[y, x]
        _envelope(f, cols, d, z, v)
        for x in range(cols):
            m[y, x] = d[x]
    mi = np.inf
    ma = -np.inf
    for i in range(rows):
        for j in range(cols):
            m[i, j] = np.sqrt(m[i, j])
            mi = min(mi, m[i, j])
            ma = max(ma, m[i, j])
    out = np.zeros((rows, cols), np.bool_)
    if mi == ma:  # double_to_image leaves the image as it was (0 / 255)
        for i in range(rows):
            for j in range(cols):
                out[i, j] = fg[i, j] and 255 > dt_keep
        return out
    scale = 255.0 / (ma - mi)
    for i in range(rows):
        for j in range(cols):
            t = int(m[i, j] * scale + 0.5)
            t = 0 if t < 0 else (255 if t > 255 else t)
            out[i, j] = t > dt_keep
    return out


def dt_keep_mask(foreground: np.ndarray, dt_keep: int = 10) -> np.ndarray:
    """``dt_binary`` then ``> dt_keep`` on a boolean foreground mask: the Euclidean
    distance of each pixel to the nearest background pixel inside the image (as
    ``scipy.ndimage.distance_transform_edt``), scaled by ``255 / max`` and rounded as
    ``(int)(d * scale + 0.5)``; an image of one value (all foreground or all background)
    is left as it is."""
    fg = np.ascontiguousarray(np.asarray(foreground, dtype=bool))
    if fg.ndim != 2 or fg.size == 0:
        return fg.copy()
    return _dt_binary(fg, int(dt_keep))


def limit_rect(rect, width: int, height: int) -> tuple[int, int, int, int]:
    """``dt_box``'s LIMIT clamps of one ``(x, y, w, h)`` bounding rect."""
    x, y, w, h = (int(v) for v in rect)

    def lim(v, lo, hi):
        return lo if v < lo else (hi if v > hi else v)

    return (
        lim(x, 0, width - 5),
        lim(y, 0, height - 5),
        lim(w, 0, width - x - 5),
        lim(h, 0, height - y - 5),
    )


def _big_overlaps(a, rects: np.ndarray) -> np.ndarray:
    """``big_overlap(a, r)`` for every row ``r`` of ``rects`` (n, 4) at once: the
    intersection area exceeds half the larger area, truncated toward zero as C's
    ``(int)`` does (a clamped rect may have a negative side, so not a floor)."""
    a = np.asarray(a, dtype=np.int64).reshape(4)
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    t = np.trunc(np.maximum(a[2] * a[3], r[:, 2] * r[:, 3]).astype(np.float64) * 0.5)
    xo = np.maximum(0, np.minimum(a[0] + a[2], r[:, 0] + r[:, 2]) - np.maximum(a[0], r[:, 0]))
    yo = np.maximum(0, np.minimum(a[1] + a[3], r[:, 1] + r[:, 3]) - np.maximum(a[1], r[:, 1]))
    return xo * yo > t


def big_overlap(a, b) -> bool:
    """``dt_box``'s big_overlap of two ``(x, y, w, h)`` rects."""
    return bool(_big_overlaps(a, b)[0])


def rank_boxes(rects: list) -> list:
    """rankBBox: area descending, stable."""
    return sorted(rects, key=lambda r: -(r[2] * r[3]))


def merge_boxes(rects: list) -> list:
    """mergeBBox, with its quirk: after erasing box j the loop index still advances.

    The C++ loop (for each kept box i, for j after it: erase j when it overlaps i much,
    then j++) skips the box that moves into an erased one's place; so within each run of
    consecutive boxes after i that overlap i, the 1st, 3rd, 5th ... are erased and the
    others kept. That is computed per i with arrays: a Backprop map at the image's
    resolution has hundreds of regions, and the pairwise Python loop took about 1 s per
    map."""
    out = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    i = 0
    while i < len(out) - 1:
        rest = out[i + 1 :]
        hit = _big_overlaps(out[i], rest)
        if hit.any():
            idx = np.arange(len(hit))
            starts = hit & ~np.concatenate(([False], hit[:-1]))
            run_start = np.maximum.accumulate(np.where(starts, idx, -1))
            erase = hit & ((idx - run_start) % 2 == 0)
            out = np.concatenate([out[: i + 1], rest[~erase]])
        i += 1
    return [tuple(int(v) for v in r) for r in out]


def dt_box(
    gray: np.ndarray,
    thresholds: Sequence[int] = (20, 100, 110),
    dt_keep: int = 10,
    opencv2_border: bool = True,
) -> list:
    """The ``dt_box`` program on a uint8 heatmap: merged ``(x, y, w, h)`` rects, biggest
    first."""
    g = np.asarray(gray, dtype=np.uint8)
    height, width = g.shape
    rects = []
    for th in thresholds:
        keep = dt_keep_mask(g > th, dt_keep)
        if opencv2_border:
            keep = keep.copy()
            keep[0, :] = keep[-1, :] = False
            keep[:, 0] = keep[:, -1] = False
        for r in contour_boxes(keep):
            rects.append(limit_rect(r, width, height))
    return merge_boxes(rank_boxes(rects))


def official_boxes(
    map2d: np.ndarray,
    thresholds: Sequence[int] = (20, 100, 110),
    dt_keep: int = 10,
    opencv2_border: bool = True,
) -> np.ndarray:
    """Inclusive devkit boxes ``[x, y, x + w, y + h]`` (n, 4) float64 of one map at the
    image's resolution, in dt_box's order; (0, 4) when there is no region."""
    gray = official_heatmap(map2d)
    if gray is None:
        return np.zeros((0, 4))
    rects = dt_box(gray, thresholds, dt_keep, opencv2_border)
    if not rects:
        return np.zeros((0, 4))
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    b = np.stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]], axis=1)
    # ILSVRC_evaluate_bbox.m: min/max of the corners
    return np.stack(
        [
            np.minimum(b[:, 0], b[:, 2]),
            np.minimum(b[:, 1], b[:, 3]),
            np.maximum(b[:, 0], b[:, 2]),
            np.maximum(b[:, 1], b[:, 3]),
        ],
        axis=1,
    )


def _check_thresholds(thresholds) -> tuple[int, int, int]:
    """dt_box's three heatmap thresholds: integers in 0..255 (else a `WSOLError`); those
    dt_box itself ignores fall back to its defaults, with a warning."""
    t = settings.integers("protocol.official_thresholds", thresholds, 3, 0, 255)
    if not (0 < t[0] < t[1] < t[2] < 255):
        warnings.warn(
            f"dt_box ignores thresholds {list(t)} (it needs 0 < t0 < t1 < t2 < 255) and uses "
            f"{list(DT_BOX_DEFAULT_THRESHOLDS)}; so does this protocol",
            stacklevel=3,
        )
        return DT_BOX_DEFAULT_THRESHOLDS
    return t  # type: ignore[return-value]


class Cam2016OfficialMetric(ProtocolMetric):
    """CAM 2016's released box generator and evaluation (see the module docstring).

    Args (checked by `wsol.protocols.settings`, named as conf/protocol/cam2016_official.yaml's
    keys):
        thresholds: dt_box's three heatmap thresholds, integers in 0..255.
        dt_keep: keep pixels whose scaled distance to the background is ``>`` this (0..254).
        iou_threshold: a box is right at IoU ``>=`` this, in (0, 1] (0.5).
        opencv2_border: zero the 1-pixel image frame before contour tracing, as
            OpenCV 2.x (the release's) did.
    """

    name = "cam2016_official"

    def __init__(
        self,
        thresholds: Sequence[int] = (20, 100, 110),
        dt_keep: int = 10,
        iou_threshold: float = 0.5,
        opencv2_border: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.thresholds = _check_thresholds(thresholds)
        # scaled distances are 0..255: 255 would keep no pixel of any map
        self.dt_keep = settings.integer("protocol.official_dt_keep", dt_keep, 0, 254)
        self.iou_threshold = settings.fraction("protocol.loc_iou", iou_threshold, one=True)
        self.opencv2_border = bool(opencv2_border)
        self.add_count("n")
        self.add_count("top1_wrong")
        self.add_count("top5_wrong")
        self.add_count("combined_wrong")
        self.add_count("gt_known_right")
        self.add_count("iou_sum")
        self.add_count("maps")
        self.add_count("empty_maps")

    def _two_boxes(
        self, map2d: np.ndarray, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray, int, bool]:
        boxes = official_boxes(map2d, self.thresholds, self.dt_keep, self.opencv2_border)
        if boxes.shape[0] == 0:
            whole = np.array([0.0, 0.0, width - 1.0, height - 1.0])
            return whole, whole, 0, True
        b1 = boxes[0]
        b2 = boxes[1] if boxes.shape[0] > 1 else boxes[0]
        return b1, b2, boxes.shape[0], False

    def score(self, maps, classes, batch) -> dict[str, Any]:
        m, cls, n_cols, sizes, gts, labels = score_inputs(maps, classes, batch, "cam2016_official")
        B = cls.shape[0]
        box1 = np.zeros((B, n_cols, 4))
        box2 = np.zeros((B, n_cols, 4))
        iou1 = np.zeros((B, n_cols))
        iou2 = np.zeros((B, n_cols))
        n_boxes = np.zeros((B, n_cols), dtype=np.int64)
        n_maps = 0
        n_empty = 0
        for b in range(B):
            h, w = (int(v) for v in sizes[b])
            gt = to_inclusive(gts[b]) if gts[b].shape[0] else None
            first = class_columns(cls[b], n_cols)
            up = upsample_maps(m, b, list(first.values()), h, w)
            per_class = {}
            for i, c in enumerate(first):
                b1, b2, nb, empty = self._two_boxes(up[i], h, w)
                n_maps += 1
                n_empty += int(empty)
                if gt is None:
                    i1 = i2 = 0.0
                else:
                    ious = iou_inclusive(np.stack([b1, b2]), gt).max(axis=1)
                    i1, i2 = float(ious[0]), float(ious[1])
                per_class[c] = (b1, b2, i1, i2, nb)
            for j in range(n_cols):
                b1, b2, i1, i2, nb = per_class[int(cls[b, j])]
                box1[b, j], box2[b, j], iou1[b, j], iou2[b, j], n_boxes[b, j] = b1, b2, i1, i2, nb
        thr = self.iou_threshold
        is_label = cls[:, :n_cols] == labels[:, None]
        ok1 = is_label & (iou1 >= thr)
        ok2 = is_label & (iou2 >= thr)
        # the paper's five guesses: (c1, b1), (c1, b2), (c2, b1), (c2, b2), (c3, b1)
        guesses = [ok1[:, 1], ok2[:, 1]]
        if n_cols > 2:
            guesses += [ok1[:, 2], ok2[:, 2]]
        if n_cols > 3:
            guesses += [ok1[:, 3]]
        combined = np.any(np.stack(guesses, axis=1), axis=1)
        return {
            "label": labels,
            "classes": cls[:, :n_cols],
            "box1": box1,
            "box2": box2,
            "iou1": iou1,
            "iou2": iou2,
            "n_boxes": n_boxes,
            "top1": ok1[:, 1],
            "top5": ok1[:, 1:].any(axis=1),
            "combined": combined,
            "gt_known": iou1[:, 0] >= thr,
            "maps": n_maps,
            "empty_maps": n_empty,
            "gt_boxes": gts,
            "size": sizes,
            "id": batch_column(batch, "id", B),
            "index": batch_column(batch, "index", B),
        }

    def update(self, result: dict[str, Any]) -> None:  # type: ignore[override]
        self._add("n", len(result["label"]))
        self._add("top1_wrong", int((~result["top1"]).sum()))
        self._add("top5_wrong", int((~result["top5"]).sum()))
        self._add("combined_wrong", int((~result["combined"]).sum()))
        self._add("gt_known_right", int(result["gt_known"].sum()))
        self._add("iou_sum", int(iou_fixed(result["iou1"][:, 0]).sum()))
        self._add("maps", int(result["maps"]))
        self._add("empty_maps", int(result["empty_maps"]))

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        n = int(self.n)
        if n == 0:
            return {}
        maps = max(int(self.maps), 1)
        return {
            "official_loc_top1_err": 100.0 * int(self.top1_wrong) / n,
            "official_loc_top5_err": 100.0 * int(self.top5_wrong) / n,
            "official_loc_top5_err_combined": 100.0 * int(self.combined_wrong) / n,
            "official_gt_known_loc": 100.0 * int(self.gt_known_right) / n,
            "official_mean_iou": 100.0 * (int(self.iou_sum) / IOU_SCALE) / n,
            "official_empty_map_rate": 100.0 * int(self.empty_maps) / maps,
        }

    def rows(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        p = self.name
        out = []
        for i in range(len(result["label"])):
            out.append(
                {
                    f"{p}_pred_box": box_text(from_inclusive(result["box1"][i, 1])),
                    f"{p}_pred_box2": box_text(from_inclusive(result["box2"][i, 1])),
                    f"{p}_gt_known_box": box_text(from_inclusive(result["box1"][i, 0])),
                    f"{p}_n_boxes": int(result["n_boxes"][i, 0]),
                    f"{p}_iou": float(result["iou1"][i, 0]),
                    f"{p}_top1_right": bool(result["top1"][i]),
                    f"{p}_top5_right": bool(result["top5"][i]),
                    f"{p}_top5_combined_right": bool(result["combined"][i]),
                    f"{p}_gt_known_right": bool(result["gt_known"][i]),
                }
            )
        return out
