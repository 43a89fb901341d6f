"""CAM 2016 (Zhou et al., CVPR 2016) as the paper's text describes it.

For each class to be scored, its raw map is upsampled bilinearly to the original image
size (``F.interpolate(mode="bilinear", align_corners=False)``) and turned into one box
by `cam2016_box`: keep the pixels whose value is ``>= threshold * max`` (in float64),
take the largest connected component (scikit-image, ``connectivity`` 1 = 4-neighbours,
2 = 8-neighbours) and return its bounding box.

Rules the paper leaves open, decided here:

- **ties**: among components of equal (largest) pixel count, the one holding the map's
  maximum (its first occurrence in raster order) wins; otherwise the one whose first
  pixel comes first in raster order;
- a map whose maximum is ``<= 0`` or not finite (e.g. a constant zero map), or whose kept
  set is empty, gives the **whole image** box.

Scoring follows the ILSVRC devkit: boxes are converted to its inclusive convention
(`to_inclusive`) and compared with `iou_inclusive` (equal to the continuous IoU of the
suite boxes); a guess is right when its class is the label and its box has IoU
``>= iou_threshold`` with some ground-truth box. Metrics (percent):

- ``loc_top1_err``: wrong unless the top-1 class is the label and its box is right;
- ``loc_top5_err``: wrong unless one of the top-5 (class, box) guesses is right;
- ``gt_known_loc``: accuracy of the ground-truth class's box;
- ``mean_iou``: mean best IoU of that box (x100);
- ``full_image_gt_known_loc``: ``gt_known_loc`` of the whole-image box (a baseline).

Each distinct class's box is computed once per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wsol.protocols import settings
from wsol.protocols.boxes import iou_inclusive, to_inclusive
from wsol.protocols.components import connected_regions
from wsol.protocols.metric import (
    IOU_SCALE,
    ProtocolMetric,
    batch_boxes,
    batch_column,
    batch_sizes,
    box_text,
    iou_fixed,
)

__all__ = ["Cam2016Metric", "best_iou", "cam2016_box", "class_columns", "upsample_maps"]

MAX_GUESSES = 5


def cam2016_box(map2d: np.ndarray, threshold: float = 0.2, connectivity: int = 2) -> np.ndarray:
    """The paper's box of one map (at the image's resolution), suite convention, float64.

    See the module docstring for the tie rule and the whole-image fallback."""
    m = np.asarray(map2d, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"cam2016_box needs a 2-D map, got shape {m.shape}")
    h, w = m.shape
    whole = np.array([0.0, 0.0, float(w), float(h)])
    if m.size == 0:
        return whole
    mx = m.max()
    if not np.isfinite(mx) or mx <= 0:
        return whole
    keep = m >= threshold * mx
    labels, areas, boxes = connected_regions(keep, connectivity=connectivity)
    if areas.size == 0:
        return whole
    best = areas.max()
    candidates = np.flatnonzero(areas == best)
    pick = candidates[0]
    if candidates.size > 1:
        at_max = labels.flat[int(np.argmax(m))] - 1
        if at_max in candidates:
            pick = at_max
    return boxes[pick].copy()


def best_iou(box: np.ndarray, gt_boxes: np.ndarray) -> float:
    """Best devkit IoU of one suite box against suite GT boxes (0 when there are none)."""
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if gt.shape[0] == 0:
        return 0.0
    return float(iou_inclusive(to_inclusive(box), to_inclusive(gt)).max())


def class_columns(classes_row: np.ndarray, n_cols: int) -> dict[int, int]:
    """Distinct classes among the first ``n_cols`` columns -> their first column."""
    out: dict[int, int] = {}
    for j in range(n_cols):
        out.setdefault(int(classes_row[j]), j)
    return out


def upsample_maps(
    maps: torch.Tensor, b: int, cols: list[int], height: int, width: int
) -> np.ndarray:
    """Maps ``maps[b, cols]`` upsampled bilinearly to (height, width): (len(cols), H, W)
    float32 numpy (``align_corners=False``, no antialiasing)."""
    x = maps[b : b + 1, cols]
    up = F.interpolate(x, size=(int(height), int(width)), mode="bilinear", align_corners=False)
    return up[0].numpy()


def cpu_maps(maps) -> torch.Tensor:
    """(B, J, h, w) maps -> float32 CPU tensor."""
    if isinstance(maps, torch.Tensor):
        return maps.detach().to("cpu", torch.float32)
    return torch.as_tensor(np.asarray(maps, dtype=np.float32))


def cpu_classes(classes) -> np.ndarray:
    if isinstance(classes, torch.Tensor):
        classes = classes.detach().cpu().numpy()
    c = np.asarray(classes)
    if c.ndim != 2:
        raise ValueError(f"classes must be (B, J), got shape {c.shape}")
    return c.astype(np.int64)


def batch_labels(batch: dict[str, Any]) -> np.ndarray:
    label = batch["label"]
    if isinstance(label, torch.Tensor):
        label = label.detach().cpu().numpy()
    return np.asarray(label, dtype=np.int64).reshape(-1)


def score_inputs(maps, classes, batch, protocol: str) -> tuple:
    """The checked inputs of a CAM 2016 ``score``: (maps (B, J, h, w) float32 CPU tensor,
    classes (B, J) int64, number of class columns scored, sizes, GT boxes, labels)."""
    m = cpu_maps(maps)
    cls = cpu_classes(classes)
    B, J = cls.shape
    if m.shape[0] != B or m.shape[1] < J:
        raise ValueError(f"maps {tuple(m.shape)} do not match classes {cls.shape}")
    if J < 2:
        raise ValueError(
            f"{protocol} needs the ground-truth class and at least one predicted class per image"
        )
    n_cols = min(J, 1 + MAX_GUESSES)
    return m, cls, n_cols, batch_sizes(batch), batch_boxes(batch), batch_labels(batch)


class Cam2016Metric(ProtocolMetric):
    """CAM 2016, the paper's rule (see the module docstring).

    Args (checked by `wsol.protocols.settings`, named as conf/protocol/cam2016.yaml's keys):
        threshold: keep pixels ``>= threshold * max``, in (0, 1) (the paper: 0.2).
        connectivity: 1 (4-neighbours) or 2 (8-neighbours), scikit-image's convention.
        iou_threshold: a box is right at IoU ``>=`` this, in (0, 1] (0.5).
    """

    name = "cam2016"

    def __init__(
        self,
        threshold: float = 0.2,
        connectivity: int = 2,
        iou_threshold: float = 0.5,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.threshold = settings.fraction("protocol.cam_threshold", threshold)
        self.connectivity = settings.one_of(
            "protocol.connectivity", connectivity, {1: "4-neighbours", 2: "8-neighbours"}
        )
        self.iou_threshold = settings.fraction("protocol.loc_iou", iou_threshold, one=True)
        self.add_count("n")
        self.add_count("top1_wrong")
        self.add_count("top5_wrong")
        self.add_count("gt_known_right")
        self.add_count("full_image_right")
        self.add_count("iou_sum")

    def score(self, maps, classes, batch) -> dict[str, Any]:
        m, cls, n_cols, sizes, gts, labels = score_inputs(maps, classes, batch, "cam2016")
        B = cls.shape[0]
        boxes = np.zeros((B, n_cols, 4))
        ious = np.zeros((B, n_cols))
        full_iou = np.zeros(B)
        for b in range(B):
            h, w = (int(v) for v in sizes[b])
            first = class_columns(cls[b], n_cols)
            cols = list(first.values())
            up = upsample_maps(m, b, cols, h, w)
            per_class = {}
            for i, c in enumerate(first):
                box = cam2016_box(up[i], self.threshold, self.connectivity)
                per_class[c] = (box, best_iou(box, gts[b]))
            for j in range(n_cols):
                box, iou = per_class[int(cls[b, j])]
                boxes[b, j] = box
                ious[b, j] = iou
            full_iou[b] = best_iou(np.array([0.0, 0.0, w, h]), gts[b])
        right = (cls[:, :n_cols] == labels[:, None]) & (ious >= self.iou_threshold)
        return {
            "label": labels,
            "classes": cls[:, :n_cols],
            "boxes": boxes,
            "ious": ious,
            "top1": right[:, 1],
            "top5": right[:, 1:].any(axis=1),
            "gt_known": ious[:, 0] >= self.iou_threshold,
            "full_image": full_iou >= self.iou_threshold,
            "gt_boxes": gts,
            "id": batch_column(batch, "id", B),
            "index": batch_column(batch, "index", B),
        }

    def update(self, result: dict[str, Any]) -> None:  # type: ignore[override]
        self._add("n", len(result["label"]))
        self._add("top1_wrong", int((~result["top1"]).sum()))
        self._add("top5_wrong", int((~result["top5"]).sum()))
        self._add("gt_known_right", int(result["gt_known"].sum()))
        self._add("full_image_right", int(result["full_image"].sum()))
        self._add("iou_sum", int(iou_fixed(result["ious"][:, 0]).sum()))

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        n = int(self.n)
        if n == 0:
            return {}
        return {
            "loc_top1_err": 100.0 * int(self.top1_wrong) / n,
            "loc_top5_err": 100.0 * int(self.top5_wrong) / n,
            "gt_known_loc": 100.0 * int(self.gt_known_right) / n,
            "mean_iou": 100.0 * (int(self.iou_sum) / IOU_SCALE) / n,
            "full_image_gt_known_loc": 100.0 * int(self.full_image_right) / n,
        }

    def rows(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        p = self.name
        out = []
        for i in range(len(result["label"])):
            cls = result["classes"][i]
            out.append(
                {
                    f"{p}_pred_class": int(cls[1]),
                    f"{p}_pred_box": box_text(result["boxes"][i, 1]),
                    f"{p}_gt_known_box": box_text(result["boxes"][i, 0]),
                    f"{p}_iou": float(result["ious"][i, 0]),
                    f"{p}_top1_right": bool(result["top1"][i]),
                    f"{p}_top5_right": bool(result["top5"][i]),
                    f"{p}_gt_known_right": bool(result["gt_known"][i]),
                }
            )
        return out
