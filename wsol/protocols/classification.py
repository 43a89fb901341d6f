"""Classification error: top-1 and top-5 (percent), from the predicted classes.

``classes`` is (B, J) long with column 0 the ground-truth class and columns 1..k the
top-k predicted classes in descending score (the localizer's layout); a floating
(B, C) tensor is taken as logits instead. With k < 5 predictions, "top-5" uses the k
available (an image is top-5 right when its label is among them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wsol.protocols.metric import ProtocolMetric

__all__ = ["ClassificationMetric", "predicted_classes"]


def predicted_classes(classes, k: int = 5) -> np.ndarray:
    """(B, <=k) int64 predicted classes, best first, from the (B, J) class layout
    (columns 1..) or from (B, C) float logits."""
    if isinstance(classes, torch.Tensor):
        if classes.is_floating_point():
            kk = min(k, classes.shape[1])
            return classes.detach().topk(kk, dim=1).indices.cpu().numpy().astype(np.int64)
        classes = classes.detach().cpu().numpy()
    c = np.asarray(classes)
    if np.issubdtype(c.dtype, np.floating):
        return np.argsort(-c, axis=1, kind="stable")[:, :k].astype(np.int64)
    return c[:, 1 : 1 + k].astype(np.int64)


class ClassificationMetric(ProtocolMetric):
    """``cls_top1_err`` and ``cls_top5_err`` (percent)."""

    name = "cls"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_count("n")
        self.add_count("top1_wrong")
        self.add_count("top5_wrong")

    def score(
        self, maps_or_logits, classes_or_labels, batch: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The protocols' ``score(maps, classes, batch)`` (``maps`` unused, labels from
        the batch), or ``score(logits_or_classes, labels)``."""
        if batch is not None:
            classes, label = classes_or_labels, batch["label"]
        else:
            classes, label = maps_or_logits, classes_or_labels
        label = (
            label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        )
        label = label.astype(np.int64).reshape(-1)
        pred = predicted_classes(classes, 5)
        if pred.shape[1] == 0:
            raise ValueError("classification needs at least one predicted class per image")
        top1 = pred[:, 0] == label
        top5 = (pred == label[:, None]).any(axis=1)
        return {
            "label": label,
            "pred": pred,
            "top1": top1,
            "top5": top5,
        }

    def update(self, result: dict[str, Any]) -> None:  # type: ignore[override]
        self._add("n", len(result["label"]))
        self._add("top1_wrong", int((~result["top1"]).sum()))
        self._add("top5_wrong", int((~result["top5"]).sum()))

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        n = int(self.n)
        if n == 0:
            return {}
        return {
            "cls_top1_err": 100.0 * int(self.top1_wrong) / n,
            "cls_top5_err": 100.0 * int(self.top5_wrong) / n,
        }

    def rows(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for i in range(len(result["label"])):
            out.append(
                {
                    "cls_label": int(result["label"][i]),
                    "cls_pred": int(result["pred"][i, 0]),
                    "cls_top5": " ".join(str(int(c)) for c in result["pred"][i]),
                    "cls_top1_right": bool(result["top1"][i]),
                    "cls_top5_right": bool(result["top5"][i]),
                }
            )
        return out
