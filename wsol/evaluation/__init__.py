"""Evaluation: the scoring step every evaluation shares (`scoring`), `EvalModule` (a
trained network's localization in Lightning's test loop, `module`), the modes of
``python -m wsol.evaluate`` (`modes`), the checkpoint loader (`checkpoint`), the
score-map export (`export`) and the score-map reader (`scoremaps`).

Names are loaded on first use, so importing the package (or the score-map modes) does
not import Lightning."""

from __future__ import annotations

import importlib

__all__ = [
    "EvalModule",
    "MetadataAnnotations",
    "ScoremapExport",
    "evaluate",
    "load_network",
    "load_scoremap",
    "merged_curves",
    "read_checkpoint",
    "score_batch",
]

_WHERE = {
    "EvalModule": "wsol.evaluation.module",
    "merged_curves": "wsol.protocols.metric",
    "evaluate": "wsol.evaluation.modes",
    "read_checkpoint": "wsol.evaluation.checkpoint",
    "load_network": "wsol.evaluation.checkpoint",
    "MetadataAnnotations": "wsol.evaluation.scoremaps",
    "load_scoremap": "wsol.evaluation.scoremaps",
    "ScoremapExport": "wsol.evaluation.export",
    "score_batch": "wsol.evaluation.scoring",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'wsol.evaluation' has no attribute {name!r}")
