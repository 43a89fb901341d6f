"""OmegaConf resolvers the configs use, registered when `wsol` is imported.

- ``${wsol.or:A,B}``: A unless it is null, else B (``hydra.run.dir`` follows
  ``paths.output_dir`` when the user sets it, so no stray run folder is made);
- ``${wsol.mul:A,B}``: A * B (e.g. total optimiser steps).
"""

from __future__ import annotations

from omegaconf import OmegaConf


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wsol.or"):
        OmegaConf.register_new_resolver("wsol.or", lambda a, b: b if a is None else a)
    if not OmegaConf.has_resolver("wsol.mul"):
        OmegaConf.register_new_resolver("wsol.mul", lambda a, b: a * b)
