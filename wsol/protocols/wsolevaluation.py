"""wsolevaluation (Choe et al., CVPR 2020, ``clovaai/wsolevaluation``): MaxBoxAcc,
MaxBoxAccV2 and PxAP, reproduced number for number.

**Score maps** (``inference.py``): the ground-truth class's raw map (column 0), as
float64, ``cv2.resize(cam, (resize, resize), interpolation=cv2.INTER_CUBIC)``, then
``normalize_scoremap`` (a map with a NaN or a constant map -> zeros; else subtract the
minimum, divide by the maximum). `WSOLEvaluationMetric.score_scoremaps` takes score maps
made elsewhere (checked by `check_scoremap`; floating dtypes are converted to float64).

**Boxes** (``evaluation.py``): thresholds ``np.arange(0, 1, cam_curve_interval)``; at
each, the boxes of the contours of ``u8 > int(t * u8.max())`` with ``u8 = (map *
255).astype(uint8)`` (see `wsol.protocols.box_sweep`); GT boxes: suite boxes -> inclusive
-> ``int(x * resize / width)``, ``int(y * resize / height)`` per coordinate (their
``resize_bbox``). A map is right at a threshold when some box has inclusive IoU ``>= T /
100`` with some GT box. MaxBoxAcc (V1): the largest contour only (``cv2.contourArea``),
IoU 50. MaxBoxAccV2: all contours, each IoU threshold; ``maxboxacc_v2`` is the mean over
the IoU thresholds of the per-IoU maxima. The best threshold is chosen once over the
whole data set, separately for each IoU (the first one reaching the maximum).

**PxAP** (images with a mask): the mask is resized with ``cv2.INTER_NEAREST``; score
values at mask == 1 (object) and mask == 0 are histogrammed with edges ``thresholds +
[1, 2, 3]`` (``np.histogram``'s binning), ignore pixels (255) left out; then as their
``MaskEvaluator.compute``: ``tp``/``fp`` reversed cumulative sums, ``precision = tp / (tp
+ fp)``, ``recall = tp / num_true``, ``PxAP = 100 * sum(precision[1:] * diff(recall))``
over the points with a positive prediction.

States are int64 counts per threshold (summed across processes). Images without a GT
box are left out of the box metrics.

**Operating point.** Set ``operating_thresholds`` (e.g. from a val split's
`WSOLEvaluationMetric.chosen_thresholds`) and compute() also reports ``<key>_at_val``:
the accuracy at that fixed threshold, for each box metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from wsol.errors import WSOLError
from wsol.protocols import settings
from wsol.protocols.box_sweep import (
    MAX_IOU_THRESHOLDS,
    box_correct_u8,
    scoremap_to_uint8,
    threshold_list,
)
from wsol.protocols.boxes import to_inclusive
from wsol.protocols.metric import ProtocolMetric, batch_boxes, batch_column, batch_sizes
from wsol.protocols.pxap import pxap_edges, pxap_from_histograms, pxap_histograms

__all__ = [
    "WSOLEvaluationMetric",
    "check_scoremap",
    "make_scoremap",
    "normalize_scoremap",
    "resize_boxes",
    "resize_mask",
]

V1_IOU = 0.5


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """wsolevaluation's normalize_scoremap (on a float64 copy)."""
    cam = np.array(cam, dtype=np.float64)
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    if cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def make_scoremap(cam: np.ndarray, resize: int = 224) -> np.ndarray:
    """Raw map (h, w) -> float64 score map (resize, resize) in [0, 1]."""
    c = np.asarray(cam, dtype=np.float64)
    r = cv2.resize(c, (resize, resize), interpolation=cv2.INTER_CUBIC)
    return normalize_scoremap(r)


def check_scoremap(array, source: str, size: int | None = 224) -> np.ndarray:
    """A score map's validity, as wsolevaluation requires it: a 2-D floating array of
    shape (size, size), finite, within [0, 1]. Returns it as float64; raises
    `WSOLError` naming `source`."""
    if not isinstance(array, np.ndarray):
        raise WSOLError(f"{source}: a score map must be a numpy array, got {type(array).__name__}")
    if not np.issubdtype(array.dtype, np.floating):
        raise WSOLError(f"{source}: a score map must have a floating dtype, got {array.dtype}")
    if array.ndim != 2:
        raise WSOLError(f"{source}: a score map must be 2-D, got shape {array.shape}")
    if size is not None and array.shape != (size, size):
        raise WSOLError(
            f"{source}: a score map must have shape ({size}, {size}), got {array.shape}"
        )
    a = array.astype(np.float64)
    if not np.isfinite(a).all():
        raise WSOLError(f"{source}: a score map must not hold NaN or inf")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        raise WSOLError(f"{source}: score map values must lie in [0, 1], got min {lo} and max {hi}")
    return a


def resize_boxes(boxes: np.ndarray, height: int, width: int, resize: int = 224) -> np.ndarray:
    """Suite boxes of an image of (height, width) -> wsolevaluation's inclusive integer
    boxes at resize x resize (their resize_bbox: ``int(x * resize / width)``)."""
    inc = to_inclusive(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    out = np.empty(inc.shape, dtype=np.int64)
    r = float(resize)
    for k, side in ((0, width), (1, height), (2, width), (3, height)):
        out[:, k] = np.trunc(inc[:, k] * r / float(side)).astype(np.int64)
    return out


def resize_mask(mask: np.ndarray, resize: int = 224) -> np.ndarray:
    """A 0/1/255 mask -> (resize, resize) with cv2.INTER_NEAREST."""
    m = np.ascontiguousarray(np.asarray(mask, dtype=np.uint8))
    return cv2.resize(m, (resize, resize), interpolation=cv2.INTER_NEAREST)


def _iou_key(t: float) -> str:
    return f"iou{float(t):g}"


class WSOLEvaluationMetric(ProtocolMetric):
    """MaxBoxAcc, MaxBoxAccV2 and PxAP (see the module docstring).

    Args (checked by `wsol.protocols.settings`, named as conf/protocol/wsolevaluation.yaml's
    keys):
        cam_curve_interval: threshold step, in (0, 1) (their ``evaluate_wsol`` defaults
            to 0.001).
        iou_thresholds: IoU thresholds of MaxBoxAccV2, in percent: 1 to 61 distinct
            values in (0, 100].
        resize: side of the score maps, a positive integer.
    """

    name = "wsolevaluation"

    def __init__(
        self,
        cam_curve_interval: float = 0.01,
        iou_thresholds: Sequence[float] = (30, 50, 70),
        resize: int = 224,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.cam_curve_interval = settings.fraction(
            "protocol.cam_curve_interval", cam_curve_interval
        )
        # one sweep bit is kept for MaxBoxAcc's IoU 50
        self.iou_thresholds = settings.percents(
            "protocol.iou_thresholds", iou_thresholds, MAX_IOU_THRESHOLDS - 1
        )
        self.resize = settings.integer("protocol.resize_length", resize, 1)
        self.thresholds = threshold_list(self.cam_curve_interval)
        self.edges = pxap_edges(self.thresholds)
        self._operating_thresholds: dict[str, float] | None = None
        n_thr = len(self.thresholds)
        self.add_count("box_count")
        self.add_count("v1_correct", (n_thr,))
        self.add_count("v2_correct", (n_thr, len(self.iou_thresholds)))
        self.add_count("mask_count")
        self.add_count("hist_true", (n_thr + 2,))
        self.add_count("hist_false", (n_thr + 2,))

    @property
    def operating_thresholds(self) -> dict[str, float] | None:
        """Fixed thresholds (metric key -> threshold on this protocol's grid), e.g. a val
        split's `chosen_thresholds`; compute() then adds ``<key>_at_val``."""
        return self._operating_thresholds

    @operating_thresholds.setter
    def operating_thresholds(self, value: dict[str, float] | None) -> None:
        self._operating_thresholds = dict(value) if value else None
        self._computed = None  # torchmetrics caches compute()

    # -- scoring -------------------------------------------------------------------------

    def make_scoremaps(self, maps) -> np.ndarray:
        """(B, J, h, w) raw maps -> (B, resize, resize) float64 score maps of column 0."""
        if isinstance(maps, torch.Tensor):
            cams = maps[:, 0].detach().to("cpu", torch.float32).numpy()
        else:
            cams = np.asarray(maps)[:, 0]
        return (
            np.stack([make_scoremap(c, self.resize) for c in cams])
            if len(cams)
            else np.zeros((0, self.resize, self.resize))
        )

    def score(self, maps, classes, batch) -> dict[str, Any]:
        return self.score_scoremaps(self.make_scoremaps(maps), batch, checked=True)

    def score_scoremaps(
        self, scoremaps, batch: dict[str, Any], checked: bool = False
    ) -> dict[str, Any]:
        """Score (B, resize, resize) score maps in [0, 1] against the batch's annotations."""
        sizes = batch_sizes(batch)
        gts = batch_boxes(batch)
        B = len(gts)
        ids = batch_column(batch, "id", B)
        masks = batch_column(batch, "mask", B)
        n_thr = len(self.thresholds)
        K = len(self.iou_thresholds)
        fracs = [t / 100 for t in self.iou_thresholds]
        v2 = np.zeros((B, n_thr, K), dtype=bool)
        v1 = np.zeros((B, n_thr), dtype=bool)
        has_box = np.zeros(B, dtype=bool)
        has_mask = np.zeros(B, dtype=bool)
        fg_pixels = np.zeros(B, dtype=np.int64)
        hist_true = np.zeros(n_thr + 2, dtype=np.int64)
        hist_false = np.zeros(n_thr + 2, dtype=np.int64)
        for b in range(B):
            s = scoremaps[b]
            if not checked:
                s = check_scoremap(
                    np.asarray(s),
                    f"score map of {ids[b] if ids[b] is not None else b}",
                    self.resize,
                )
            if gts[b].shape[0]:
                h, w = (int(v) for v in sizes[b])
                gt = resize_boxes(gts[b], h, w, self.resize)
                u8 = scoremap_to_uint8(s)
                v2[b], v1[b] = box_correct_u8(u8, gt, self.thresholds, fracs, largest_iou=V1_IOU)
                has_box[b] = True
            if masks[b] is not None:
                m = resize_mask(masks[b], self.resize)
                ht, hf = pxap_histograms(s, m, self.edges)
                hist_true += ht
                hist_false += hf
                has_mask[b] = True
                fg_pixels[b] = int((m == 1).sum())
        return {
            "v2": v2,
            "v1": v1,
            "has_box": has_box,
            "has_mask": has_mask,
            "fg_pixels": fg_pixels,
            "hist_true": hist_true,
            "hist_false": hist_false,
            "id": ids,
            "index": batch_column(batch, "index", B),
        }

    def update(self, result: dict[str, Any]) -> None:  # type: ignore[override]
        hb = result["has_box"]
        self._add("box_count", int(hb.sum()))
        self._add("v1_correct", result["v1"][hb].sum(axis=0))
        self._add("v2_correct", result["v2"][hb].sum(axis=0))
        self._add("mask_count", int(result["has_mask"].sum()))
        self._add("hist_true", result["hist_true"])
        self._add("hist_false", result["hist_false"])

    # -- results -------------------------------------------------------------------------

    def _accuracies(self) -> dict[str, np.ndarray]:
        """Per-threshold accuracies (percent) of every box metric."""
        n = int(self.box_count)
        v1 = self.v1_correct.cpu().numpy()
        v2 = self.v2_correct.cpu().numpy()
        out = {"maxboxacc": v1 * 100.0 / n}
        for k, t in enumerate(self.iou_thresholds):
            out[f"maxboxacc_v2_{_iou_key(t)}"] = v2[:, k] * 100.0 / n
        return out

    def chosen_thresholds(self) -> dict[str, float]:
        """The best threshold of every box metric on the data seen (first argmax), to be
        used as another split's ``operating_thresholds``."""
        with self.synced():
            if int(self.box_count) == 0:
                return {}
            return {
                key: float(self.thresholds[int(np.argmax(acc))])
                for key, acc in self._accuracies().items()
            }

    def _threshold_index(self, key: str, t: float) -> int:
        i = int(np.argmin(np.abs(self.thresholds - t)))
        if abs(self.thresholds[i] - t) > 1e-9:
            raise WSOLError(
                f"operating threshold {key}={t} is not on this protocol's threshold grid"
            )
        return i

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        out: dict[str, float] = {}
        if int(self.box_count) > 0:
            accs = self._accuracies()
            best = {}
            for key, acc in accs.items():
                i = int(np.argmax(acc))
                best[key] = float(acc[i])
                out[key] = float(acc[i])
                out[f"{key}_threshold"] = float(self.thresholds[i])
            out["maxboxacc_v2"] = float(
                np.mean([best[f"maxboxacc_v2_{_iou_key(t)}"] for t in self.iou_thresholds])
            )
            if self.operating_thresholds:
                v2_keys = [f"maxboxacc_v2_{_iou_key(t)}" for t in self.iou_thresholds]
                at_val = {}
                for key, t in self.operating_thresholds.items():
                    if key not in accs:
                        continue
                    at_val[key] = float(accs[key][self._threshold_index(key, float(t))])
                    out[f"{key}_at_val"] = at_val[key]
                if all(k in at_val for k in v2_keys):
                    out["maxboxacc_v2_at_val"] = float(np.mean([at_val[k] for k in v2_keys]))
        if int(self.mask_count) > 0:
            pxap, _, _ = pxap_from_histograms(
                self.hist_true.cpu().numpy(), self.hist_false.cpu().numpy()
            )
            out["pxap"] = pxap
        return out

    def curves(self) -> pd.DataFrame | None:
        with self.synced():
            return self._curves()

    def _curves(self) -> pd.DataFrame | None:
        if int(self.box_count) == 0 and int(self.mask_count) == 0:
            return None
        n_thr = len(self.thresholds)
        df = pd.DataFrame({"threshold": self.thresholds})
        if int(self.box_count) > 0:
            accs = self._accuracies()
            df["maxboxacc"] = accs["maxboxacc"]
            for t in self.iou_thresholds:
                df[f"v2_{_iou_key(t)}"] = accs[f"maxboxacc_v2_{_iou_key(t)}"]
        if int(self.mask_count) > 0:
            _, precision, recall = pxap_from_histograms(
                self.hist_true.cpu().numpy(), self.hist_false.cpu().numpy()
            )
            # index n_thr + 1 - i holds the scores >= thresholds[i]
            df["pxap_precision"] = precision[::-1][:n_thr]
            df["pxap_recall"] = recall[::-1][:n_thr]
        return df

    def rows(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        p = self.name
        out = []
        for i in range(len(result["has_box"])):
            row: dict[str, Any] = {}
            if result["has_box"][i]:
                row[f"{p}_v1_n_correct"] = int(result["v1"][i].sum())
                for k, t in enumerate(self.iou_thresholds):
                    row[f"{p}_v2_{_iou_key(t)}_n_correct"] = int(result["v2"][i, :, k].sum())
            if result["has_mask"][i]:
                row[f"{p}_mask_fg_pixels"] = int(result["fg_pixels"][i])
            out.append(row)
        return out
