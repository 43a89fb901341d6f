"""The suite's one box convention, and the conversions each protocol makes at its edge.

**Suite convention** (everything inside `wsol` that is not a protocol's own edge):
a box is ``[x0, y0, x1, y1]`` in *pixel-edge* coordinates of the image it refers to,
``x1``/``y1`` exclusive. The box of pixel columns ``i..j`` and rows ``k..l`` (inclusive
indices) is ``[i, k, j + 1, l + 1]``; its width is ``x1 - x0``; floats are allowed. This is
torchvision's ``XYXY`` format, so ``tv_tensors.BoundingBoxes`` follow resizes, crops and
flips correctly and ``torchvision.ops.box_iou`` is the IoU.

**Inclusive convention** (ILSVRC devkit, the CAM 2016 code, wsolevaluation): integer
pixel indices ``[x0, y0, x1, y1]`` with the last column and row included, so widths are
``x1 - x0 + 1``. ``to_inclusive``/``from_inclusive`` convert; for integer boxes the round
trip is exact, and ``iou_inclusive(to_inclusive(a), to_inclusive(b)) == iou(a, b)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

__all__ = [
    "box_of_mask",
    "from_inclusive",
    "iou",
    "iou_inclusive",
    "to_inclusive",
]


def to_inclusive(boxes: np.ndarray) -> np.ndarray:
    """Suite boxes -> inclusive pixel-index boxes (``x1 - 1``, ``y1 - 1``)."""
    b = np.asarray(boxes, dtype=np.float64).copy()
    b[..., 2:] -= 1
    return b


def from_inclusive(boxes: np.ndarray) -> np.ndarray:
    """Inclusive pixel-index boxes -> suite boxes (``x1 + 1``, ``y1 + 1``)."""
    b = np.asarray(boxes, dtype=np.float64).copy()
    b[..., 2:] += 1
    return b


def iou(a, b) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of suite-convention boxes (continuous areas)."""
    ta = torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1, 4))
    tb = torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    return box_iou(ta, tb).numpy()


def iou_inclusive(a, b) -> np.ndarray:
    """IoU matrix of inclusive boxes, the devkit / wsolevaluation way: ``+1`` in every
    width and height, intersection clipped at zero, a non-positive union gives IoU 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    iw = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    out = np.zeros(union.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def box_of_mask(mask: np.ndarray) -> np.ndarray | None:
    """Suite box around the True pixels of a 2-D mask, or None when the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)
