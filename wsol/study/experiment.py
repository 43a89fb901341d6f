"""A study's shared settings: a Hydra experiment config, ``conf/experiment/NAME.yaml``.

The file follows the lightning-hydra-template convention: its first line is
``# @package _global_``, a ``defaults:`` list chooses config groups (``- override /data:
cub``) and the other keys set config values (``trainer: {max_epochs: 50}``).
It may start from another experiment (a defaults entry ``- OTHER``).
``python -m wsol.run experiment=NAME`` applies it, and so does every job a study
launches (``experiment=NAME`` first on its command line, so a sweep's own overrides
win, as on any command line).

Hydra composes the file; this module only *reads* it to say what it sets: `Experiment.
settings` is the file as the equivalent overrides (``data=cub``,
``trainer.max_epochs=50``), in the file's order. The table's header lists them, and
`wsol.study.plan.drift` compares each with what a finished run recorded or resolved (a
run made before the study named an experiment recorded these overrides one by one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsol.cli import CONF_DIR
from wsol.errors import WSOLError
from wsol.study.overrides import render_value

EXPERIMENT_DIR = CONF_DIR / "experiment"
PACKAGE_LINE = "# @package _global_"


def experiment_names(folder: Path = EXPERIMENT_DIR) -> list[str]:
    """The experiments there are: the yaml files of conf/experiment/."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    #: key -> the equivalent override ("data=cub", "trainer.max_epochs=50"), file order
    settings: dict[str, str] = field(default_factory=dict)
    #: the config groups the defaults list chooses (keys of `settings`)
    groups: frozenset[str] = frozenset()

    @property
    def override(self) -> str:
        """The command-line override that applies it."""
        return f"experiment={self.name}"


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = f"{prefix}={render_value(value)}"


def _group(entry: Any, where: str) -> tuple[str, Any] | None:
    """(group, choice) of a defaults-list entry; None for ``_self_``."""
    if entry == "_self_":
        return None
    if isinstance(entry, Mapping) and len(entry) == 1:
        ((key, choice),) = entry.items()
        key = str(key).strip()
        if key.startswith("override "):
            key = key[len("override ") :].strip()
        group = key.lstrip("/").split("@", 1)[0]
        if group and (CONF_DIR / group).is_dir():
            return group, choice
    raise WSOLError(
        f"{where}: {entry!r}: a study reads only `- override /GROUP: CHOICE` entries "
        f"(GROUP a folder of conf/), another experiment's name and _self_"
    )


def load_experiment(
    name: str, where: str, folder: Path = EXPERIMENT_DIR, _within: tuple[str, ...] = ()
) -> Experiment:
    """The experiment ``name`` (conf/experiment/NAME.yaml); `WSOLError` starting with
    ``where`` (the study file and key) when it does not exist or cannot be read. A
    defaults entry naming another experiment (``- methods_synthetic``) contributes that
    experiment's settings first; the file's own keys come after them (Hydra puts
    ``_self_`` last)."""
    if name in _within:
        raise WSOLError(f"{where}: {name!r}: experiments include each other in a cycle")
    path = folder / f"{name}.yaml"
    if not path.is_file():
        valid = ", ".join(experiment_names(folder)) or "none"
        raise WSOLError(f"{where}: no experiment config {path}; valid: {valid}")
    text = path.read_text(encoding="utf-8")
    if not text.startswith(PACKAGE_LINE):
        raise WSOLError(f"{path}: an experiment config starts with the line {PACKAGE_LINE!r}")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise WSOLError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(raw, Mapping):
        raise WSOLError(f"{path}: an experiment config is a mapping (defaults, config keys)")
    settings: dict[str, str] = {}
    groups = set()
    defaults = raw.get("defaults") or []
    if not isinstance(defaults, list):
        raise WSOLError(f"{path}: defaults: expected a list, got {defaults!r}")
    for i, entry in enumerate(defaults):
        if isinstance(entry, str) and entry != "_self_":  # another experiment of the group
            base = load_experiment(entry, f"{path}: defaults[{i}]", folder, (*_within, name))
            settings.update(base.settings)
            groups |= base.groups
            continue
        chosen = _group(entry, f"{path}: defaults[{i}]")
        if chosen is not None:
            group, choice = chosen
            settings[group] = f"{group}={render_value(choice)}"
            groups.add(group)
    for key, value in raw.items():
        if key != "defaults":
            _flatten(value, str(key), settings)
    return Experiment(name=name, path=path, settings=settings, groups=frozenset(groups))
