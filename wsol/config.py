"""OmegaConf resolvers the configs use, registered when `wsol` is imported, and
`canonical`, the one comparison of config values (a checkpoint's against an override,
a study run's record against its plan).

- ``${wsol.or:A,B}``: A unless it is null, else B (``hydra.run.dir`` follows
  ``paths.output_dir`` when the user sets it, so no stray run folder is made);
- ``${wsol.mul:A,B}``: A * B (e.g. total optimiser steps).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wsol.or"):
        OmegaConf.register_new_resolver("wsol.or", lambda a, b: b if a is None else a)
    if not OmegaConf.has_resolver("wsol.mul"):
        OmegaConf.register_new_resolver("wsol.mul", lambda a, b: a * b)


def canonical(value: Any) -> str:
    """A value in a form that compares equal across int/float, tuple/list and key order
    (``4`` and ``4.0``; Hydra's ``False`` and YAML's ``false``)."""

    def norm(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            return float(v)
        return str(v)

    return json.dumps(norm(value), sort_keys=True)
