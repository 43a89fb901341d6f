"""``method=has``: Hide-and-Seek (Singh & Lee, ICCV 2017), as wsolevaluation trains it
(``wsol/method/has.py``): every training image is cut into ``grid_size``-pixel squares
and each square is zeroed, in every channel, with probability ``drop_rate``,
independently per image and square. The network, the loss and the test are CAM's.

Reference quirk (``reference_indexing``, default true): the reference walks the first
image axis in steps over the *width* and clips both axes at the *height*
(``x_end = min(height, x + grid)``, ``y_end = min(height, y + grid)``), so on a
non-square image some squares are never hidden (W > H) or hidden squares overlap the
border wrongly (W < H). On square inputs, which its training crops are, that is the
plain grid; ``reference_indexing=false`` always uses the plain grid over (H, W).
The draws come from torch's generator (seeded per step, `wsol.methods.base`), one
uniform per square, hidden when ``<= drop_rate`` as in the reference.
"""

from __future__ import annotations

import math

import torch

from wsol.methods.base import Method
from wsol.protocols.settings import integer, probability

__all__ = ["HideAndSeek", "hide_patches"]


def hide_patches(
    images: torch.Tensor, grid_size: int, drop_rate: float, reference_indexing: bool = True
) -> torch.Tensor:
    """``images`` (B, C, H, W) with random ``grid_size`` squares zeroed (a new tensor)."""
    if grid_size == 0:
        return images
    b, _, h, w = images.shape
    # the reference's loops: rows from range(0, W, g), columns from range(0, H, g), both
    # clipped at H; the plain grid: rows over H, columns over W
    rows_extent, cols_extent = (w, h) if reference_indexing else (h, w)
    cols_clip = h if reference_indexing else w
    n_rows, n_cols = math.ceil(rows_extent / grid_size), math.ceil(cols_extent / grid_size)
    hidden = torch.rand((b, n_rows, n_cols), device=images.device) <= drop_rate
    # each pixel's square, and whether a square of the loops covers it at all
    rows, cols = torch.arange(h, device=images.device), torch.arange(w, device=images.device)
    row_sq, col_sq = rows // grid_size, cols // grid_size
    covered = (row_sq < n_rows)[:, None] & ((col_sq < n_cols) & (cols < cols_clip))[None, :]
    hidden_px = hidden[:, row_sq.clamp(max=n_rows - 1)][:, :, col_sq.clamp(max=n_cols - 1)]
    keep = (~(hidden_px & covered)).to(images.dtype)
    return images * keep[:, None]


class HideAndSeek(Method):
    name = "has"

    def __init__(self, grid_size: int = 4, drop_rate: float = 0.5, reference_indexing: bool = True):
        self.grid_size = integer("method.grid_size", grid_size, 0)
        self.drop_rate = probability("method.drop_rate", drop_rate)
        self.reference_indexing = bool(reference_indexing)

    def inputs(self, images, labels):
        return hide_patches(images, self.grid_size, self.drop_rate, self.reference_indexing), labels

    def config(self) -> dict:
        return {
            "name": self.name,
            "grid_size": self.grid_size,
            "drop_rate": self.drop_rate,
            "reference_indexing": self.reference_indexing,
        }
