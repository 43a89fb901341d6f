"""Map generators and a batch builder shared by the protocol tests (fixed seeds)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy import ndimage


def normalize(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64).copy()
    if m.max() == m.min():
        return np.zeros_like(m)
    m -= m.min()
    m /= m.max()
    return m


def gaussian_map(rng, h=224, w=224) -> np.ndarray:
    sigma = rng.uniform(2, 12)
    return normalize(ndimage.gaussian_filter(rng.random((h, w)), sigma))


def cam_map(rng, h=224, w=224, side=None) -> np.ndarray:
    side = side or int(rng.choice([7, 14]))
    small = rng.random((side, side)) ** rng.uniform(1, 4)
    return normalize(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))


def plateau_map(rng, h=224, w=224) -> np.ndarray:
    """Quantised smooth maps: wide plateaus, nested rings, holes."""
    base = cam_map(rng, h, w)
    levels = int(rng.integers(3, 8))
    m = np.round(base * levels) / levels
    if rng.random() < 0.5:  # punch holes
        for _ in range(int(rng.integers(1, 6))):
            y, x = rng.integers(2, h - 4), rng.integers(2, w - 4)
            m[y : y + int(rng.integers(1, 4)), x : x + int(rng.integers(1, 4))] = 0
    return m


def noise_map(rng, h, w) -> np.ndarray:
    """Rough maps: many components and holes at every level."""
    m = rng.random((h, w))
    if rng.random() < 0.5:
        m = ndimage.gaussian_filter(m, rng.uniform(0.5, 1.5))
    return normalize(m)


def random_gt(rng, h=224, w=224, n=None) -> np.ndarray:
    """Inclusive integer GT boxes (n, 4) inside an h x w map."""
    n = n or int(rng.integers(1, 4))
    out = []
    for _ in range(n):
        x0 = int(rng.integers(0, w - 1))
        y0 = int(rng.integers(0, h - 1))
        x1 = int(rng.integers(x0, w))
        y1 = int(rng.integers(y0, h))
        out.append([x0, y0, x1, y1])
    return np.asarray(out, dtype=np.int64)


def make_batch(labels, boxes, sizes, masks=None, ids=None, start=0) -> dict:
    """A collate-style batch: boxes in the suite convention, sizes (height, width)."""
    n = len(labels)
    return {
        "label": torch.as_tensor(labels, dtype=torch.long),
        "boxes": [torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1, 4)) for b in boxes],
        "size": torch.as_tensor(np.asarray(sizes, dtype=np.int64).reshape(-1, 2)),
        "mask": list(masks) if masks is not None else [None] * n,
        "id": list(ids) if ids is not None else [f"img{start + i}" for i in range(n)],
        "index": torch.arange(start, start + n),
    }
