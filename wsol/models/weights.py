"""Weight loading for ``model.pretrained=true`` and ``model.weights=PATH``, strict both ways.

`load_pretrained(net, name, pretrained, weights)`:

- ``weights=PATH`` (takes precedence over ``pretrained``): a local file read with
  ``torch.load(path, map_location="cpu", weights_only=True)``. It may be
  * a state dict of this network (keys as ``net.state_dict()``), or a Lightning
    checkpoint ``{"state_dict": {"net.<key>": ...}}`` whose ``net.`` prefix is stripped:
    it must match exactly (every key, every shape);
  * a state dict of the torchvision network the model is cut from (as
    ``torchvision.models.vgg16().state_dict()``): mapped as below.
  The two are told apart by which key set the file shares more keys with.
- ``pretrained=True``: torchvision's ImageNet weights for the source network (the
  `Source` the network registered with, its ``IMAGENET1K_V1`` entry), read from the torch hub cache
  (``torch.hub.get_dir()/checkpoints/<file name of the weights' URL>``, i.e.
  ``$TORCH_HOME/hub/checkpoints``), downloaded there first where the machine has a
  network. Without network and cache: a `WSOLError` naming the file, the folder and the URL.

A torchvision state dict is mapped by the network's key-mapping function onto the
network's keys (or onto "removed by the surgery"), then loaded strictly: every tensor of
every kept layer must be in the file with the network's shape; a key the torchvision
network does not have is an error; the keys of removed layers are the only ones left
out (listed at INFO). The layers not filled from the file must be exactly the new ones
(``net.new_layer_prefixes``; listed at INFO). A classifier the network replaces
(``fc`` of ResNet/GoogLeNet, ``classifier.6`` of VGG/AlexNet) loads when its shape
matches (``num_classes=1000``) and is replaced otherwise. BatchNorm's
``num_batches_tracked`` may be absent (old checkpoints lack it). ``strict=False`` is
never used.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from wsol.errors import WSOLError
from wsol.models.registry import weight_source

log = logging.getLogger(__name__)

#: how many keys an error message names before "..."
_SHOW = 5
_DOWNLOAD_TIMEOUT_S = 60


# ----------------------------------------------------------------------------------------
# torchvision sources and key mappings


@dataclass(frozen=True)
class Source:
    """The torchvision network a model is cut from and how its keys map onto the model;
    given by the network's file as ``@register(name, weights=Source(...))`` (None: the
    network has no torchvision weights)."""

    arch: str  #: torchvision builder name (``torchvision.models.<arch>``)
    weights: str  #: attribute path of the weights entry in ``torchvision.models``
    builder_kwargs: tuple[tuple[str, object], ...]  #: as torchvision builds it for its weights
    map_key: Callable[[str], str | None]  #: torchvision key -> our key, or None (removed)

    def weights_entry(self):
        import torchvision.models as tvm

        enum_name, member = self.weights.split(".")
        return getattr(getattr(tvm, enum_name), member)

    @property
    def url(self) -> str:
        return self.weights_entry().url

    @property
    def file_name(self) -> str:
        return os.path.basename(urlparse(self.url).path)


def _index(key: str) -> int:
    """The layer index of ``features.<i>.<param>`` keys."""
    return int(key.split(".")[1])


def sequential_map(last: int, classifier: str | None) -> Callable[[str], str | None]:
    """VGG/AlexNet: ``features.<i>`` kept for ``i <= last``; ``classifier.*`` moved under
    ``classifier`` (a prefix such as ``head.classifier.``) or removed (None)."""

    def map_key(key: str) -> str | None:
        if key.startswith("features."):
            return key if _index(key) <= last else None
        if key.startswith("classifier."):
            return classifier + key[len("classifier.") :] if classifier else None
        return None

    return map_key


def module_map(kept: tuple[str, ...], fc: str | None) -> Callable[[str], str | None]:
    """ResNet/Inception/GoogLeNet: top-level modules in ``kept`` go under ``features.``,
    ``fc.*`` to ``fc`` (e.g. ``head.fc.``) or removed, everything else removed."""

    def map_key(key: str) -> str | None:
        top = key.split(".", 1)[0]
        if top in kept:
            return "features." + key
        if top == "fc" and fc:
            return fc + key[len("fc.") :]
        return None

    return map_key


@cache
def _reference_shapes(
    arch: str, builder_kwargs: tuple[tuple[str, object], ...]
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's network as its ImageNet weights were saved (built on
    the meta device: no memory, no initialisation)."""
    import torchvision.models as tvm

    with torch.device("meta"):
        ref = getattr(tvm, arch)(weights=None, **dict(builder_kwargs))
    return {k: tuple(v.shape) for k, v in ref.state_dict().items()}


# ----------------------------------------------------------------------------------------
# reading files


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0].split(". ")[0] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def describe_load_error(path: Path, e: BaseException) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in words."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        head = b""
    if "weights only load failed" in str(e).lower():
        detail = [
            ln.split("error:", 1)[1].split(". ")[0].strip()
            for ln in str(e).splitlines()
            if "Unpickler error:" in ln
        ]
        return (
            "it holds Python objects other than tensors, which torch.load(weights_only=True) refuses to "
            f"unpickle ({detail[0] if detail else 'weights only load failed'}), or is a truncated pickle"
        )
    if isinstance(e, OSError):
        why = "it cannot be read"
    elif head.startswith(b"PK\x03\x04"):
        why = "it is a damaged or truncated torch.save file"
    elif head[:1] == b"\x80":
        why = "it is a damaged or truncated pickle"
    elif not head:
        why = "it is empty"
    else:
        why = f"it is not a file written by torch.save (it starts with {head!r})"
    return f"{why} ({_first_line(e)})"


def read_state_dict(path: str | os.PathLike, label: str | None = None) -> dict[str, torch.Tensor]:
    """A flat ``{key: tensor}`` from ``path`` (``weights_only=True``); a Lightning
    checkpoint's ``state_dict`` with its ``net.`` prefix stripped. `WSOLError` naming the
    file (``label``, default ``model.weights=PATH``) for anything else."""
    what = label or f"model.weights={path}"
    p = Path(path).expanduser()
    if not p.is_file():
        raise WSOLError(f"{what}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling, zip, EOF and I/O errors: say which, in one line
        raise WSOLError(
            f"{what}: cannot be read as a state dict: {describe_load_error(p, e)}"
        ) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        sd = dict(obj["state_dict"])
        net_keys = [k for k in sd if isinstance(k, str) and k.startswith("net.")]
        if net_keys:
            if len(net_keys) < len(sd):
                log.info("%s: using the %d 'net.' entries of the checkpoint's state_dict, ignoring %d others",
                         what, len(net_keys), len(sd) - len(net_keys))  # fmt: skip
            sd = {k[len("net.") :]: sd[k] for k in net_keys}
    elif isinstance(obj, Mapping):
        sd = dict(obj)
    else:
        raise WSOLError(
            f"{what}: holds a {type(obj).__name__}, not a state dict (a dict of tensors)"
        )
    if not sd:
        raise WSOLError(f"{what}: the state dict is empty")
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise WSOLError(
                f"{what}: not a state dict (a dict of tensors): entry {k!r} is a {type(v).__name__}"
            )
    return sd


def _download(url: str, dst: Path) -> None:
    """Fetch ``url`` to ``dst`` through a temporary file in the same folder."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=dst.name + ".", suffix=".partial")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as r,
        ):
            while chunk := r.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_weights_path(source: Source) -> Path:
    """Where torchvision's weights for ``source`` are (or go) in the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / source.file_name


def _torchvision_file(name: str, source: Source) -> Path:
    dst = cached_weights_path(source)
    if dst.is_file():
        return dst
    url = source.url
    log.info(
        "downloading torchvision's %s ImageNet weights for %s: %s -> %s",
        source.arch,
        name,
        url,
        dst,
    )
    try:
        _download(url, dst)
    except Exception as e:
        raise WSOLError(
            f"model.pretrained=true: torchvision's ImageNet weights for {name} ({source.arch}) are not in the "
            f"cache and could not be downloaded ({_first_line(e)}): put {dst.name} in {dst.parent} "
            f"(download {url} on a machine with network), or set model.weights=PATH"
        ) from e
    return dst


# ----------------------------------------------------------------------------------------
# matching


def _shape(t: torch.Tensor | tuple[int, ...]) -> str:
    s = tuple(t.shape) if isinstance(t, torch.Tensor) else tuple(t)
    return str(s)


def _listing(label: str, items: list[str]) -> str:
    more = ", ..." if len(items) > _SHOW else ""
    return f"{label} ({len(items)}): {', '.join(items[:_SHOW])}{more}"


def _layers(keys) -> str:
    """Module names of parameter keys, in order, without repeats."""
    seen: dict[str, None] = {}
    for k in keys:
        seen.setdefault(k.rsplit(".", 1)[0], None)
    return ", ".join(seen) or "none"


def _optional(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def load_own_weights(net: nn.Module, name: str, sd: dict[str, torch.Tensor], where: str) -> None:
    """Load a wsol state dict into ``net`` strictly: every missing, unexpected or
    mis-shaped key is listed in one `WSOLError` naming ``where`` (only BatchNorm's
    ``num_batches_tracked`` may be absent)."""
    target = net.state_dict()
    missing = [k for k in target if k not in sd and not _optional(k)]
    unexpected = [k for k in sd if k not in target]
    shapes = [
        f"{k} has shape {_shape(sd[k])} in the file but {_shape(target[k])} in {name}"
        for k in sd
        if k in target and sd[k].shape != target[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(_listing(f"keys of {name} missing from the file", missing))
        if unexpected:
            parts.append(_listing(f"keys in the file that {name} does not have", unexpected))
        if shapes:
            parts.append(_listing("shapes that differ", shapes))
        raise WSOLError(f"{where}: the state dict does not match {name}: " + "; ".join(parts))
    full = dict(target)
    full.update(sd)
    net.load_state_dict(full, strict=True)
    log.info("loaded %s from %s (%d tensors)", name, where, len(sd))


def _load_torchvision(
    net: nn.Module, name: str, source: Source, sd: dict[str, torch.Tensor], where: str
) -> None:
    ref = _reference_shapes(source.arch, source.builder_kwargs)
    target = net.state_dict()
    prefixes = tuple(getattr(net, "new_layer_prefixes", ()))
    unexpected = [k for k in sd if k not in ref]
    mapped: dict[str, torch.Tensor] = {}
    removed: list[str] = []
    replaced: list[str] = []
    shapes: list[str] = []
    for k, v in sd.items():
        if k not in ref:
            continue
        ours = source.map_key(k)
        if ours is None:
            removed.append(k)
            continue
        if ours not in target:
            raise RuntimeError(
                f"key mapping of {name} sends {k} to {ours}, which {name} does not have"
            )
        if v.shape == target[ours].shape:
            mapped[ours] = v
        elif ours.startswith(prefixes):  # a classifier of another size: replaced by a new one
            replaced.append(f"{k} {_shape(v)} -> {ours} {_shape(target[ours])}")
        else:
            shapes.append(
                f"{k} has shape {_shape(v)} in the file but {ours} is {_shape(target[ours])} in {name}"
            )
    missing = [k for k in ref if k not in sd and source.map_key(k) is not None and not _optional(k)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(_listing("keys of the kept layers missing from the file", missing))
        if unexpected:
            parts.append(
                _listing(f"keys that torchvision's {source.arch} does not have", unexpected)
            )
        if shapes:
            parts.append(_listing("shapes that differ", shapes))
        raise WSOLError(
            f"{where}: not the torchvision {source.arch} state dict that {name} needs: "
            + "; ".join(parts)
        )
    new = [k for k in target if k not in mapped and not _optional(k)]
    not_new = [k for k in new if not k.startswith(prefixes)]
    if not_new:  # a bug in the key mapping or in new_layer_prefixes, not a user error
        raise RuntimeError(
            f"{name}: layers neither loaded from {source.arch} nor new: {_layers(not_new)}"
        )
    full = dict(target)
    full.update(mapped)
    net.load_state_dict(full, strict=True)
    log.info(
        "loaded torchvision's %s weights from %s into %s: %d tensors",
        source.arch,
        where,
        name,
        len(mapped),
    )
    log.info("removed by the surgery (not loaded): %s", _layers(removed))
    if replaced:
        log.info("replaced (another number of classes): %s", "; ".join(replaced))
    log.info("new layers of %s (initialised, not loaded): %s", name, _layers(new))


def _looks_torchvision(
    net: nn.Module, source: Source | None, sd: Mapping[str, torch.Tensor]
) -> bool:
    if source is None:
        return False
    ref = _reference_shapes(source.arch, source.builder_kwargs)
    own = net.state_dict()
    return sum(k in ref for k in sd) > sum(k in own for k in sd)


def load_pretrained(
    net: nn.Module, name: str, pretrained: bool, weights: str | os.PathLike | None
) -> None:
    """Load ``weights`` (a local state dict) or, with ``pretrained``, torchvision's
    ImageNet weights into ``net`` (the network ``name``), strictly; see the module doc."""
    source = weight_source(name)
    if weights:
        if pretrained:
            log.info(
                "model.weights=%s is loaded; model.pretrained is not (the file replaces it)",
                weights,
            )
        where = f"model.weights={weights}"
        sd = read_state_dict(weights)
        if _looks_torchvision(net, source, sd):
            _load_torchvision(net, name, source, sd, where)
        else:
            load_own_weights(net, name, sd, where)
        return
    if not pretrained:
        return
    if source is None:
        raise WSOLError(
            f"model.pretrained=true: there are no torchvision weights for {name}; "
            f"set model.weights=PATH to load a state dict, or model.pretrained=false"
        )
    path = _torchvision_file(name, source)
    sd = read_state_dict(
        path, label=f"the cached torchvision weights {path} (delete the file to download it again)"
    )
    _load_torchvision(net, name, source, sd, str(path))


__all__ = [
    "Source",
    "cached_weights_path",
    "describe_load_error",
    "load_own_weights",
    "load_pretrained",
    "module_map",
    "read_state_dict",
    "sequential_map",
]
