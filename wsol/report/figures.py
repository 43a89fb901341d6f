"""Figures: CAM overlays with boxes (cams.png), sample grids of a data set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from wsol.io import atomic_open

GT_COLOR = "#00e000"
PRED_COLOR = "#ff2020"


def denormalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, H, W) normalised -> (H, W, 3) in [0, 1]."""
    img = image.transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
    return np.clip(img, 0.0, 1.0)


def image_at_size(image, size: tuple[int, int], mean, std) -> np.ndarray:
    """A normalised (3, h, w) input tensor bilinearly resized to the image's ``size``
    (H, W) and denormalised: (H, W, 3) in [0, 1], for drawing."""
    import torch.nn.functional as F

    t = image.detach().float().cpu()[None]
    t = F.interpolate(t, size=tuple(int(v) for v in size), mode="bilinear", align_corners=False)
    return denormalize(t[0].numpy(), mean, std)


def cam_sample(image, cam, size: tuple[int, int], mean, std) -> dict[str, np.ndarray]:
    """What a CAM figure draws for one image: the image at its ``size`` (`image_at_size`),
    the (h, w) map ``cam`` bilinearly resized to it and min-max normalised to [0, 1]
    (``"cam"``), and the paper's box of the resized map (20% of its max, the largest
    component; ``"box"``)."""
    import torch.nn.functional as F

    from wsol.protocols.cam2016 import cam2016_box

    m = cam.detach().float().cpu()[None, None]
    m = F.interpolate(m, size=tuple(int(v) for v in size), mode="bilinear", align_corners=False)
    m = m[0, 0].numpy()
    lo, hi = float(m.min()), float(m.max())
    return {
        "image": image_at_size(image, size, mean, std),
        "cam": (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m),
        "box": cam2016_box(m),
    }


def _draw_box(ax, box, color: str, lw: float = 1.5) -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(
        plt.Rectangle(
            (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=lw
        )
    )


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def cam_grid(
    samples: Sequence[dict],
    path: str | Path,
    columns: int = 8,
    title: str | None = None,
) -> None:
    """Grid of images with their CAM overlaid, the ground-truth boxes (green) and the
    predicted box (red). Each sample: ``image`` (H, W, 3) in [0, 1], ``cam`` (H, W)
    normalised to [0, 1], ``gt_boxes`` (N, 4), ``pred_box`` (4,) or None, ``caption``."""
    n = len(samples)
    if n == 0:
        return
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, samples):
        ax.imshow(s["image"])
        ax.imshow(s["cam"], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        for b in np.asarray(s["gt_boxes"]).reshape(-1, 4):
            _draw_box(ax, b, GT_COLOR)
        if s.get("pred_box") is not None:
            _draw_box(ax, s["pred_box"], PRED_COLOR)
        ax.set_title(s.get("caption", ""), fontsize=7)
    if title:
        fig.suptitle(title + "   (green: ground truth, red: predicted box)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
