"""``export_scoremaps=DIR`` (mode 3 of ``python -m wsol.evaluate``): every test image's
score map written as wsolevaluation makes them, ``DIR/<image_id>.npy``, so that any
program (and mode 2) can score them. It rides along the evaluation loop as a protocol
that reports no metric."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from wsol.data.common import inside
from wsol.io import save_npy
from wsol.protocols.metric import ProtocolMetric, batch_column
from wsol.protocols.wsolevaluation import WSOLEvaluationMetric

__all__ = ["ScoremapExport", "export_resize"]


class ScoremapExport(ProtocolMetric):
    """Not a protocol: writes every image's score map (`WSOLEvaluationMetric.make_scoremaps`
    of the maps, float64) to ``folder/<image_id>.npy``, atomically, as the evaluation loop
    hands it the maps. Reports no metric. ``folder=None`` writes nothing (the `val_copy`
    used for the val split)."""

    name = "export_scoremaps"

    def __init__(self, folder: str | os.PathLike | None = None, resize: int = 224, **kwargs):
        super().__init__(**kwargs)
        self.folder = Path(folder) if folder is not None else None
        self.maker = WSOLEvaluationMetric(resize=resize)
        self.operating_thresholds = None
        self.add_count("written")

    def val_copy(self) -> ScoremapExport:
        """The val pass's copy writes nothing: only the test split's maps are exported."""
        copy = super().val_copy()
        copy.folder = None
        return copy

    def chosen_thresholds(self) -> dict:
        return {}

    def score(self, maps, classes, batch) -> dict[str, Any]:
        if self.folder is None:
            return {"written": 0}
        scoremaps = self.maker.make_scoremaps(maps)
        ids = batch_column(batch, "id", len(scoremaps))
        for image_id, s in zip(ids, scoremaps):
            target = inside(self.folder, f"{image_id}.npy", f"export_scoremaps={self.folder}")
            save_npy(target, s)
        return {"written": len(scoremaps)}

    def update(self, result: dict[str, Any]) -> None:  # type: ignore[override]
        self._add("written", int(result["written"]))

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        return {}


def export_resize(cfg: DictConfig, protocols: Mapping) -> int:
    """The side of the exported maps: the selected wsolevaluation protocol's resize, else
    ``protocol.resize_length`` (224)."""
    p = protocols.get("wsolevaluation")
    if p is not None:
        return int(p.resize)
    return int((cfg.get("protocol") or {}).get("resize_length", 224))
