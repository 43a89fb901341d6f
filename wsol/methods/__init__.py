"""WSOL training methods (``method=NAME``): CAM (the base, `Method`) and the methods that
change the network, the images or the loss (HaS, ACoL, SPG, ADL, CutMix), and the
few-shot baseline trained on the fully annotated split (FSL). See docs/METHODS.md."""

from __future__ import annotations

from collections.abc import Mapping

from wsol.methods.base import Method

__all__ = ["Method", "method_from_config"]


def method_from_config(config: Mapping | None, what: str = "checkpoint") -> Method:
    """The method a checkpoint records (``Method.config()``: its name and settings),
    built from ``conf/method/NAME.yaml``'s ``_target_`` with the recorded settings: what
    rebuilds a network with the method's layers before its weights load."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from wsol.cli import CONF_DIR
    from wsol.errors import WSOLError

    config = dict(config or {"name": "cam"})
    name = str(config.pop("name", "cam"))
    path = CONF_DIR / "method" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml") if not p.stem.startswith("_"))
        raise WSOLError(f"{what}: unknown method {name!r}; known: {', '.join(known)}")
    cls = get_class(OmegaConf.load(path)["_target_"])
    try:
        return cls(**config)
    except TypeError as e:
        raise WSOLError(f"{what}: method={name} settings {config} do not build: {e}") from None
