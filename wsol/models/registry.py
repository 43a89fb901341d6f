"""The registry behind ``model=NAME``: each network file registers its builders, and
`build_model` (the ``_target_`` of every ``conf/model/*.yaml``) constructs one by name.

A network is one file plus one yaml:

- ``wsol/models/<file>.py`` with a builder decorated with
  ``@register("name", label="Display name", weights=Source(...))``: ``label`` is the name
  figures and tables show (default: ``name``); ``weights`` the torchvision network its
  ImageNet weights come from and how their keys map (`wsol.models.weights.Source`), or
  None when there are none. The file is found by itself: every module of the
  ``wsol.models`` package except the infrastructure (`_INFRASTRUCTURE`) is imported, and
  an error in one is raised, never skipped;
- ``conf/model/name.yaml``: a one-line comment, ``defaults: [/_model_base@_here_, _self_]``
  (what every model shares, in ``conf/_model_base.yaml``) and the network's own settings
  (``name``, ``input_size``, ``head_lr_mult`` and its builder's keyword arguments).

The tests ask for a case of every registered network in ``tests/models/zoo_cases.py``.

No list, dict or branch anywhere else names the network.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsol.errors import WSOLError

if TYPE_CHECKING:
    from wsol.models.weights import Source

#: modules of ``wsol.models`` that define no network (everything else is imported)
_INFRASTRUCTURE = frozenset({"base", "module", "registry", "weights"})


@dataclass(frozen=True)
class Network:
    """A registered network: its builder, display label and torchvision weight source."""

    name: str
    builder: Callable
    label: str
    weights: Source | None


_REGISTRY: dict[str, Network] = {}
_loaded = False


def register(
    name: str, *, label: str | None = None, weights: Source | None = None
) -> Callable[[Callable], Callable]:
    """Register the decorated builder as network ``name`` (see the module doc)."""

    def deco(builder: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = Network(name, builder, label or name, weights)
        return builder

    return deco


def network_modules() -> list[str]:
    """The modules of the ``wsol.models`` package that hold networks."""
    import wsol.models as package

    return sorted(
        f"{package.__name__}.{m.name}"
        for m in pkgutil.iter_modules(package.__path__)
        if not m.ispkg and not m.name.startswith("_") and m.name not in _INFRASTRUCTURE
    )


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in network_modules():
        importlib.import_module(mod)
    _loaded = True


def available() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def network_label(name: str) -> str:
    """The display label of network ``name`` (``name`` itself when it has none)."""
    _load_all()
    entry = _REGISTRY.get(name)
    return entry.label if entry is not None else name


def weight_source(name: str) -> Source | None:
    """The torchvision weight source of network ``name`` (None: it has none)."""
    _load_all()
    entry = _REGISTRY.get(name)
    return entry.weights if entry is not None else None


def weight_sources() -> dict[str, Source]:
    """Network name -> its torchvision weight source, for the networks that have one."""
    _load_all()
    return {n: e.weights for n, e in sorted(_REGISTRY.items()) if e.weights is not None}


def build_model(
    name: str,
    num_classes: int,
    pool: str = "avg",
    pretrained: bool = False,
    weights: str | None = None,
    input_size: int | None = None,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    head_lr_mult: float = 1.0,
    pool_r: float | None = None,
    **kwargs,
):
    """Build network ``name`` for ``num_classes`` classes with the global ``pool``.

    ``pretrained`` loads torchvision's ImageNet weights into every layer that survives the
    surgery; ``weights`` loads a local state dict (both strict, ``weights_only=True``).
    ``pool_r`` is the sharpness of ``pool="lse"`` (`wsol.models.base.GlobalPool`).
    ``input_size``, ``mean``, ``std`` and ``head_lr_mult`` are recorded on the network
    (``net.input_size`` ...) so that a checkpoint carries its preprocessing and the
    optimiser knows how fast the new layers train.
    """
    _load_all()
    if name not in _REGISTRY:
        raise WSOLError(
            f"unknown model {name!r}; valid: {', '.join(sorted(_REGISTRY))} (set model=NAME)"
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise WSOLError(f"model.num_classes must be a positive integer, got {num_classes!r}")
    net = _REGISTRY[name].builder(num_classes=num_classes, pool=pool, **kwargs)
    net.name = name
    if pool_r is not None:  # pool=lse: every global pool of the network at this sharpness
        from wsol.models.base import GlobalPool

        for m in net.modules():
            if isinstance(m, GlobalPool) and m.pool == "lse":
                m.r = GlobalPool("lse", pool_r).r
    net.input_size = int(input_size or net.default_input_size)
    net.mean = tuple(float(m) for m in mean)
    net.std = tuple(float(s) for s in std)
    net.head_lr_mult = float(head_lr_mult)
    net.pretrained = bool(pretrained or weights)
    if pretrained or weights:
        from wsol.models.weights import load_pretrained

        load_pretrained(net, name=name, pretrained=pretrained, weights=weights)
    return net
