"""The base class of the protocol metrics (see docs/ARCHITECTURE.md, "Protocols").

Every protocol is a `torchmetrics.Metric` whose states are integer tensors reduced by
sum, so a DDP all-reduce is exact and the result does not depend on how the data set
was split across processes or batches. The API:

- ``score(maps, classes, batch) -> result``: pure, numpy result, no state change;
- ``update(result)``: adds the result's counts to the states;
- ``compute() -> dict[str, float]``: the metrics (percent);
- ``curves() -> pandas.DataFrame | None``: per-threshold curves, where the protocol has them;
- ``rows(result) -> list[dict]``: per-image columns for ``predictions.csv``, prefixed by
  the protocol's name (plus ``index`` and ``id``, the keys to merge on).

Mean IoUs are summed as int64 fixed point (`iou_fixed`), never as floats, so that they
too are exact and order-independent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

__all__ = [
    "IOU_SCALE",
    "ProtocolMetric",
    "as_numpy_maps",
    "batch_boxes",
    "batch_sizes",
    "box_text",
    "boxes_text",
    "iou_fixed",
    "merged_curves",
]

IOU_SCALE = 2**32


def iou_fixed(iou) -> np.ndarray:
    """IoU(s) in [0, 1] -> int64 fixed point ``round(iou * 2**32)``."""
    return np.rint(np.asarray(iou, dtype=np.float64) * IOU_SCALE).astype(np.int64)


def as_numpy_maps(maps) -> np.ndarray:
    """(B, J, h, w) maps on any device -> float32 CPU numpy."""
    if isinstance(maps, torch.Tensor):
        return maps.detach().to("cpu", torch.float32).numpy()
    return np.asarray(maps, dtype=np.float32)


def batch_sizes(batch: dict[str, Any]) -> np.ndarray:
    """(B, 2) int64 ``(height, width)`` of the original images."""
    size = batch["size"]
    if isinstance(size, torch.Tensor):
        size = size.detach().cpu().numpy()
    return np.asarray(size, dtype=np.int64).reshape(-1, 2)


def batch_boxes(batch: dict[str, Any]) -> list[np.ndarray]:
    """The GT boxes of each image, (N_i, 4) float64, suite convention."""
    out = []
    for b in batch["boxes"]:
        if isinstance(b, torch.Tensor):
            b = b.detach().cpu().numpy()
        out.append(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    return out


def batch_column(batch: dict[str, Any], key: str, n: int) -> list:
    """A per-image column of the batch as a list (``None`` entries when absent)."""
    v = batch.get(key)
    if v is None:
        return [None] * n
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().tolist()
    return list(v)


def _fmt(v: float) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def box_text(box) -> str:
    """One suite box as ``"x0 y0 x1 y1"``."""
    return " ".join(_fmt(v) for v in np.asarray(box, dtype=np.float64).reshape(4))


def boxes_text(boxes) -> str:
    """Several suite boxes as ``"x0 y0 x1 y1;x0 y0 x1 y1"``."""
    return ";".join(box_text(b) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4))


class ProtocolMetric(Metric):
    """Base class: integer, sum-reduced states; ``score`` is pure, ``update`` adds."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None
    name = "protocol"

    def add_count(self, name: str, shape: tuple[int, ...] = ()) -> None:
        """Add an int64 state of the given shape, summed across processes."""
        self.add_state(name, default=torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, name: str, value) -> None:
        state = getattr(self, name)
        t = torch.as_tensor(np.asarray(value, dtype=np.int64), device=state.device)
        setattr(self, name, state + t.reshape(state.shape))

    @contextlib.contextmanager
    def synced(self) -> Iterator[None]:
        """States summed over the processes (a no-op outside DDP), for reads outside
        compute() such as curves(); local states are restored afterwards."""
        if self._is_synced:
            yield
            return
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            process_group=self.process_group,
            should_sync=self._to_sync,
        ):
            yield

    def score(
        self, maps: torch.Tensor, classes: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def update(self, result: dict[str, Any]) -> None:  # type: ignore[override]
        raise NotImplementedError

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        raise NotImplementedError

    def curves(self):
        return None

    def rows(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    def val_copy(self) -> ProtocolMetric:
        """A copy with the same settings and empty states, for the val pass that chooses
        operating thresholds (``val_thresholds=true``). A protocol with side effects
        (files it writes) turns them off here."""
        copy = self.clone()
        copy.reset()
        return copy


def merged_curves(protocols):
    """The per-threshold curves of every protocol in ``protocols`` that has them, side by
    side (one ``threshold`` column); None when none has curves."""
    import pandas as pd

    frames = [p.curves() for p in protocols]
    frames = [f for f in frames if f is not None]
    if not frames:
        return None
    out = frames[0]
    for f in frames[1:]:
        out = pd.merge(out, f, on="threshold", how="outer")
    return out
