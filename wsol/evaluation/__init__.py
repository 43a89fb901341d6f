"""Evaluation: `EvalModule` (a trained network's localization in Lightning's test loop)
and the modes of ``python -m wsol.evaluate`` (`wsol.evaluation.modes`).

Names are loaded on first use, so importing the package (or the score-map modes) does
not import Lightning."""

from __future__ import annotations

import importlib

__all__ = ["EvalModule", "evaluate", "merged_curves", "read_checkpoint"]

_WHERE = {
    "EvalModule": "wsol.evaluation.module",
    "merged_curves": "wsol.protocols.metric",
    "evaluate": "wsol.evaluation.modes",
    "read_checkpoint": "wsol.evaluation.modes",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'wsol.evaluation' has no attribute {name!r}")
