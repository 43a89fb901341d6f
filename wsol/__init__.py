"""wsol: a benchmark suite for weakly supervised object localization.

The stable Python names are `__all__` (docs/API.md): the metrics of `wsol.metrics` and
`WSOLError`. They are loaded on first use (module ``__getattr__``), so ``import wsol``
(which every entry point and config does, for the resolvers) imports neither torch nor
Lightning.
"""

from __future__ import annotations

import importlib

from wsol.config import register_resolvers

register_resolvers()

__version__ = "0.1.0"

__all__ = [
    "Cam2016Error",
    "Cam2016OfficialError",
    "MaxBoxAcc",
    "MaxBoxAccV2",
    "PxAP",
    "Targets",
    "WSOLError",
    "WSOLEvaluation",
    "__version__",
    "make_scoremap",
    "metrics",
    "score",
]

_WHERE = {name: "wsol.metrics" for name in __all__ if name not in ("WSOLError", "__version__")}
_WHERE["WSOLError"] = "wsol.errors"


def __getattr__(name: str):
    if name == "metrics":
        return importlib.import_module("wsol.metrics")
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'wsol' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
