"""Range checks of the protocol (and method) settings, made once, when a protocol or a
training method is constructed.

Each protocol's constructor checks every setting of its ``conf/protocol/*.yaml`` file
with one of these helpers, so a bad value stops `wsol.run` or `wsol.evaluate` as soon
as `wsol.job.selected_protocols` builds the protocols, before anything is computed or
written. The error is a `WSOLError` of one line naming the setting as a user writes the
override (the flat keys of those files, e.g. ``protocol.cam_threshold``, whichever
protocols are selected) and the rule it breaks::

    protocol.cam_threshold=1.5: must be in (0, 1)

Each helper returns the value converted (float, int or tuple).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

from wsol.errors import WSOLError

__all__ = ["fraction", "integer", "integers", "one_of", "percents", "probability"]


def _show(value) -> str:
    """A value as an override writes it (``1.5``, ``true``, ``[30,50,70]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def _fail(key: str, value, rule: str) -> WSOLError:
    return WSOLError(f"{key}={_show(value)}: {rule}")


def _real(value) -> float | None:
    """The value as a finite float, or None when it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _int(value) -> int | None:
    """The value as an int when it is a whole number (2 or 2.0), else None."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    x = _real(value)
    return int(x) if x is not None and x.is_integer() else None


def fraction(key: str, value, *, one: bool = False) -> float:
    """A number in (0, 1), or in (0, 1] with ``one=True`` (an IoU threshold)."""
    rule = "must be in (0, 1]" if one else "must be in (0, 1)"
    x = _real(value)
    if x is None or not (0 < x < 1 or (one and x == 1)):
        raise _fail(key, value, rule)
    return x


def probability(key: str, value) -> float:
    """A number in [0, 1] (a probability, a share)."""
    x = _real(value)
    if x is None or not 0 <= x <= 1:
        raise _fail(key, value, "must be in [0, 1]")
    return x


def one_of(key: str, value, options: dict[int, str]) -> int:
    """One of the integers ``options`` (value -> what it means)."""
    v = _int(value)
    if v not in options:
        said = " or ".join(f"{k} ({what})" for k, what in options.items())
        raise _fail(key, value, f"must be {said}")
    return v


def integer(key: str, value, low: int, high: int | None = None) -> int:
    """A whole number ``>= low`` (and ``<= high``)."""
    v = _int(value)
    if v is None or v < low or (high is not None and v > high):
        if high is not None:
            rule = f"must be an integer in {low}..{high}"
        elif low == 1:
            rule = "must be a positive integer"
        else:
            rule = f"must be an integer >= {low}"
        raise _fail(key, value, rule)
    return v


def _sequence(key: str, value, rule: str) -> list:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
        raise _fail(key, value, rule)
    return list(value)


def integers(key: str, value, count: int, low: int, high: int) -> tuple[int, ...]:
    """Exactly ``count`` whole numbers in ``low..high``."""
    rule = f"must be {count} integers in {low}..{high}"
    items = _sequence(key, value, rule)
    out = [_int(v) for v in items]
    if len(out) != count or any(v is None or not low <= v <= high for v in out):
        raise _fail(key, value, rule)
    return tuple(out)  # type: ignore[arg-type]


def percents(key: str, value, most: int) -> tuple[float, ...]:
    """A non-empty list of at most ``most`` distinct numbers in (0, 100] (IoU
    thresholds in percent)."""
    rule = f"must be a list of 1 to {most} distinct percentages in (0, 100]"
    items = _sequence(key, value, rule)
    out = [_real(v) for v in items]
    if (
        len(out) > most
        or any(x is None or not 0 < x <= 100 for x in out)
        or len(set(out)) != len(out)
    ):
        raise _fail(key, value, rule)
    return tuple(out)  # type: ignore[arg-type]
