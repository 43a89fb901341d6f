"""The registry behind ``model=NAME``: each network file registers its builders, and
`build_model` (the ``_target_`` of every ``conf/model/*.yaml``) constructs one by name.

Adding a network is a new file in `wsol/models/` with an ``@register("name")`` builder,
its import in `_NETWORK_MODULES`, and a ``conf/model/name.yaml``: no branch anywhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from wsol.errors import WSOLError

_REGISTRY: dict[str, Callable] = {}
_NETWORK_MODULES = (
    "wsol.models.googlenet",
    "wsol.models.vgg",
    "wsol.models.alexnet",
    "wsol.models.nin",
    "wsol.models.resnet",
    "wsol.models.inception",
    "wsol.models.tiny",
)


def register(name: str) -> Callable[[Callable], Callable]:
    def deco(builder: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = builder
        return builder

    return deco


def _load_all() -> None:
    for mod in _NETWORK_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a network file not written yet
            if e.name != mod:
                raise


def available() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


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
    **kwargs,
):
    """Build network ``name`` for ``num_classes`` classes with the global ``pool``.

    ``pretrained`` loads torchvision's ImageNet weights into every layer that survives the
    surgery; ``weights`` loads a local state dict (both strict, ``weights_only=True``).
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
    net = _REGISTRY[name](num_classes=num_classes, pool=pool, **kwargs)
    net.name = name
    net.input_size = int(input_size or net.default_input_size)
    net.mean = tuple(float(m) for m in mean)
    net.std = tuple(float(s) for s in std)
    net.head_lr_mult = float(head_lr_mult)
    net.pretrained = bool(pretrained or weights)
    if pretrained or weights:
        from wsol.models.weights import load_pretrained

        load_pretrained(net, name=name, pretrained=pretrained, weights=weights)
    return net
