"""Reading what ``wsol.run`` saves: a checkpoint's model config and network weights.

`read_checkpoint` opens a Lightning checkpoint with ``torch.load(weights_only=True)`` and
returns its model config and ``net.*`` weights; `build_network` rebuilds the network
from that config and loads the weights strictly (`wsol.models.weights.load_own_weights`);
`load_network` does both. Every failure is one `WSOLError` naming the file. Used by
``python -m wsol.evaluate ckpt=...`` and by the study figures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from wsol.cli import CONF_DIR, parse_overrides
from wsol.config import canonical
from wsol.errors import WSOLError
from wsol.models.registry import build_model
from wsol.models.weights import describe_load_error, load_own_weights

__all__ = [
    "adopt_model",
    "build_network",
    "check_model_overrides",
    "load_network",
    "read_checkpoint",
]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(model config, network state dict without the ``net.`` prefix) of a checkpoint
    written by ``wsol.run``; `WSOLError` naming the file for anything else. The training
    method's config (``hyper_parameters['method']``, absent in checkpoints of before the
    methods: CAM) rides in the model config as ``_method`` (names with ``_`` are not
    builder arguments)."""
    p = Path(path).expanduser()
    what = f"ckpt={p}"
    if not p.is_file():
        raise WSOLError(f"{what}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling, zip, EOF and I/O errors: one line saying which
        raise WSOLError(f"{what}: not a checkpoint: {describe_load_error(p, e)}") from e
    need = "a checkpoint written by wsol.run (a Lightning checkpoint with state_dict and hyper_parameters['model'])"
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        held = (
            f"a dict without 'state_dict' (keys: {', '.join(map(str, list(obj)[:5]))})"
            if isinstance(obj, Mapping)
            else f"a {type(obj).__name__}"
        )
        raise WSOLError(f"{what}: not {need}: it holds {held}")
    hp = obj.get("hyper_parameters")
    model = hp.get("model") if isinstance(hp, Mapping) else None
    if not isinstance(model, Mapping) or not model.get("name") or "num_classes" not in model:
        raise WSOLError(f"{what}: not {need}: it has no model config (hyper_parameters['model'])")
    sd = {
        k[len("net.") :]: v
        for k, v in obj["state_dict"].items()
        if isinstance(k, str) and k.startswith("net.") and isinstance(v, torch.Tensor)
    }
    if not sd:
        raise WSOLError(f"{what}: not {need}: its state_dict has no 'net.' weights")
    model = dict(model)
    method = hp.get("method")
    model["_method"] = dict(method) if isinstance(method, Mapping) else {"name": "cam"}
    return model, sd


def check_model_overrides(cfg: DictConfig, overrides: list[str], model: Mapping, what: str) -> None:
    """A ``model=``, ``model.KEY=`` or ``pool=`` the user gave that contradicts the
    checkpoint's model config is an error (the checkpoint decides the network)."""
    for o in parse_overrides(overrides):  # Hydra's own parse of the command line
        group, _, key = o.key_or_group.partition(".")
        if group not in ("model", "pool") or o.is_delete() or o.is_sweep_override():
            continue
        value = str(o.value())
        if group == "model" and not key:
            if value != str(model["name"]):
                raise WSOLError(
                    f"{what} holds a {model['name']} network, not model={value} "
                    f"(leave model= out: the checkpoint's own model config is used)"
                )
        elif group == "pool" and key in ("", "name"):
            if "pool" in model and value != str(model["pool"]):
                raise WSOLError(
                    f"{what} holds a {model['name']} network with pool={model['pool']}, not pool={value}"
                )
        elif group == "model":
            head = key.split(".")[0]
            if head not in model:
                raise WSOLError(
                    f"{what}: model.{key} is not a setting of the checkpoint's model config "
                    f"({', '.join(k for k in model if not k.startswith('_'))})"
                )
            given = OmegaConf.select(cfg.model, key, throw_on_missing=False)
            if isinstance(given, (DictConfig, list)) or OmegaConf.is_config(given):
                given = OmegaConf.to_container(given, resolve=True)
            mine: Any = model
            for part in key.split("."):
                mine = mine.get(part) if isinstance(mine, Mapping) else None
            if canonical(given) != canonical(mine):
                raise WSOLError(
                    f"{what}: model.{key}={given!r} contradicts the checkpoint's model.{key}={mine!r} "
                    f"(leave it out: the checkpoint's own model config is used)"
                )


def adopt_model(cfg: DictConfig, model: Mapping) -> None:
    """Make the checkpoint's model config the run's ``model`` (and its pool the ``pool``),
    so that the data's ``${model.input_size}``, mean and std are the checkpoint's."""
    with open_dict(cfg):
        own = {k: v for k, v in model.items() if not str(k).startswith("_")}
        cfg.model = OmegaConf.create({**own, "pretrained": False, "weights": None})
        pool = model.get("pool")
        if pool is not None and (cfg.get("pool") is None or cfg.pool.get("name") != pool):
            f = CONF_DIR / "pool" / f"{pool}.yaml"
            cfg.pool = OmegaConf.load(f) if f.is_file() else OmegaConf.create({"name": pool})


def build_network(model: Mapping, sd: dict[str, torch.Tensor], what: str):
    """The checkpoint's network, its weights loaded strictly (`wsol.models.weights`). The
    file's ``_target_`` is not followed: every wsol model is built by `build_model`."""
    kwargs = {k: v for k, v in model.items() if not str(k).startswith("_")}
    kwargs.update(pretrained=False, weights=None)
    try:
        net = build_model(**kwargs)
    except WSOLError as e:
        raise WSOLError(f"{what}: the checkpoint's model config: {e}") from None
    except TypeError as e:
        raise WSOLError(f"{what}: the checkpoint's model config does not build: {e}") from None
    # the method's layers (ACoL's head, SPG's branches) before the weights that fill them
    from wsol.methods import method_from_config

    net = method_from_config(model.get("_method"), what).prepare(net)
    load_own_weights(net, str(model["name"]), sd, what)
    return net


def load_network(
    path: str | os.PathLike, *, eval_mode: bool = True
) -> tuple[torch.nn.Module, dict]:
    """(network with the checkpoint's weights loaded strictly, its model config)."""
    what = f"ckpt={Path(path).expanduser()}"
    model, sd = read_checkpoint(path)
    net = build_network(model, sd, what)
    if eval_mode:
        net.eval()
    return net, model
