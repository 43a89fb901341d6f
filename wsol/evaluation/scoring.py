"""The one scoring step of every evaluation: a batch's maps scored by every selected
protocol, its counts added to the protocols' states, and one row per image for
``predictions.csv``.

Used by training's test step (`wsol.evaluation.module.EvalModule`, maps from the
network's localizer), by a baseline (mode 4, a fixed map) and by score maps read from
disk (mode 2, where the protocol scores the ready 224x224 maps). Each protocol's
``score`` is pure; ``update`` adds its result to the torchmetrics states (summed across
processes), and ``rows`` gives its per-image columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from wsol.protocols.metric import ProtocolMetric, boxes_text

__all__ = ["GUESS_WORDS", "add_results", "image_rows", "is_guess", "score_batch"]

#: metric and prediction columns that need a classifier's guesses (absent for baselines)
GUESS_WORDS = ("top1", "top5", "pred_class", "pred_box")


def is_guess(key: str) -> bool:
    """Whether a metric or column is about the classifier's guesses (top-1/top-5)."""
    return any(w in key for w in GUESS_WORDS)


def image_rows(batch: Mapping[str, Any], classes: torch.Tensor | None = None) -> list[dict]:
    """One row per image of ``batch``: index, id, label and ground-truth boxes, and with
    ``classes`` (B, 1 + k: ground truth then the top-k guesses) the top-1 class and the
    top-k list."""
    n = len(batch["id"])
    tops = classes[:, 1:].tolist() if classes is not None else [None] * n
    rows = []
    for i, image_id, y, top, b in zip(
        batch["index"].tolist(), batch["id"], batch["label"].tolist(), tops, batch["boxes"]
    ):
        row: dict[str, Any] = {"index": int(i), "id": image_id, "label": int(y)}
        if top is not None:
            row["pred_class"] = int(top[0])
            row["top5"] = " ".join(str(int(c)) for c in top)
        row["gt_boxes"] = boxes_text(b)
        rows.append(row)
    return rows


def add_results(
    protocols: Mapping[str, ProtocolMetric],
    results: Mapping[str, Any],
    rows: list[dict],
    guesses: bool = True,
) -> None:
    """Add each protocol's result of one batch to its state and its columns to ``rows``
    (without the guess columns when ``guesses`` is False: no classifier)."""
    for name, p in protocols.items():
        p.update(results[name])
        for row, extra in zip(rows, p.rows(results[name])):
            row.update(extra if guesses else {k: v for k, v in extra.items() if not is_guess(k)})


def score_batch(
    protocols: Mapping[str, ProtocolMetric],
    maps: torch.Tensor,
    classes: torch.Tensor,
    batch: Mapping[str, Any],
    guesses: bool = True,
) -> list[dict]:
    """Score raw maps (B, J, h, w) of ``classes`` (B, J) under every protocol, add the
    counts, return the batch's rows. ``guesses=False``: columns 1.. of ``classes`` are
    not a classifier's (a baseline), so no guess column is written."""
    results = {name: p.score(maps, classes, batch) for name, p in protocols.items()}
    rows = image_rows(batch, classes if guesses else None)
    add_results(protocols, results, rows, guesses)
    return rows
