"""Hydra override strings: writing a value as one, reading one back canonically."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from wsol.config import canonical

#: characters a Hydra override value may hold without quotes (here)
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:@%+\-${}]+$")


def render_value(v: Any) -> str:
    """A Python value as a Hydra override value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(render_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{k}:{render_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if SAFE_VALUE.match(s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def override_key(text: str) -> str:
    """The key of ``[+~]key=value`` (without its prefix)."""
    return text.split("=", 1)[0].strip().lstrip("+~")


@functools.lru_cache(maxsize=4096)
def _parse_one(text: str) -> tuple[str, str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (o,) = OverridesParser.create().parse_overrides([text])
        return o.get_key_element().lstrip("+~"), canonical(o.value())
    except Exception:  # not parseable: compare the text
        return override_key(text), text


def parse(overrides: Iterable[str]) -> dict[str, tuple[str, str]]:
    """key -> (the value, canonical; the override as written), by Hydra's own parser, so
    that ``x=false`` and Hydra's record ``x=False`` compare equal. A later override of a
    key replaces an earlier one."""
    out = {}
    for text in overrides:
        key, value = _parse_one(text)
        out.pop(key, None)
        out[key] = (value, text)
    return out
