"""metrics.json (flat: metric values in percent plus the run's identity) and the short
table printed at the end of a run."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from wsol.io import write_json

#: the keys printed in the end-of-run table, in order, with their meaning
SUMMARY_KEYS = {
    "cls_top1_err": "classification top-1 error",
    "cls_top5_err": "classification top-5 error",
    "loc_top1_err": "localization top-1 error (cam2016)",
    "loc_top5_err": "localization top-5 error (cam2016)",
    "gt_known_loc": "GT-known localization accuracy (cam2016)",
    "mean_iou": "mean IoU of the GT-class box x100 (cam2016)",
    "full_image_gt_known_loc": "GT-known accuracy of the whole-image box",
    "official_loc_top1_err": "localization top-1 error (official CAM code)",
    "official_loc_top5_err": "localization top-5 error (official CAM code)",
    "official_gt_known_loc": "GT-known localization (official CAM code)",
    "maxboxacc": "MaxBoxAcc (wsolevaluation V1, IoU 0.5)",
    "maxboxacc_v2": "MaxBoxAccV2 (mean over IoU 0.3/0.5/0.7)",
    "pxap": "PxAP (pixel average precision)",
}


def write_metrics(path: str | Path, metrics: Mapping[str, object]) -> None:
    write_json(path, dict(metrics))


def read_metrics(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def format_table(metrics: Mapping[str, object], title: str = "") -> str:
    """A short two-column table of the headline metrics present in ``metrics``."""
    rows = []
    for key, meaning in SUMMARY_KEYS.items():
        v = metrics.get(key)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            rows.append((key, f"{v:6.2f}", meaning))
    if not rows:
        return title
    w = max(len(k) for k, _, _ in rows)
    lines = [title] if title else []
    lines.append(f"{'metric'.ljust(w)}  {'value':>6}  meaning")
    lines.append(f"{'-' * w}  {'-' * 6}  {'-' * 7}")
    lines += [f"{k.ljust(w)}  {v}  {m}" for k, v, m in rows]
    return "\n".join(lines)
