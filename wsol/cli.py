"""What the entry points share: a one-line error for bad input, and a check of config
group choices before Hydra composes (Hydra's own message spans many lines)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

from wsol.errors import WSOLError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = (
    "data",
    "model",
    "pool",
    "localizer",
    "protocol",
    "optim",
    "trainer",
    "logger",
    "paths",
    "experiment",
)


def options(group: str) -> list[str]:
    """The choices of a config group: the yaml files in conf/<group>/."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _values(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if re.match(r"^(choice|range|glob)\(", value):  # sweep functions: leave to Hydra
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def check_overrides(argv: list[str]) -> None:
    """Raise WSOLError for an unknown choice of a config group in ``argv``."""
    for arg in argv:
        m = re.match(r"^[+~]*([a-z_]+)=(.*)$", arg)
        if not m or m.group(1) not in GROUPS:
            continue
        group, raw = m.groups()
        valid = options(group)
        for v in _values(raw):
            if v not in valid and v != "null":
                raise WSOLError(
                    f"unknown {group} {v!r}; valid: {', '.join(valid)} (set {group}=NAME)"
                )


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def precheck_overrides(argv: list[str] | None = None) -> None:
    try:
        check_overrides(sys.argv[1:] if argv is None else argv)
    except WSOLError as e:
        fail(str(e), e.exit_code)


def guard(fn: Callable, *args, **kwargs):
    """Call ``fn``; a `WSOLError` becomes one line on stderr and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except WSOLError as e:
        logging.getLogger("wsol").debug("user error", exc_info=True)
        fail(str(e), e.exit_code)
