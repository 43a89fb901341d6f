"""Checks derived from dataclasses: `build` turns a parsed YAML mapping into a dataclass
instance, checking each key against the field's type.

The schema is the dataclass: its fields are the valid keys, a field without a default is
required, the annotation says what a value may be, and ``Annotated[T, Check(...)]`` adds
a condition a type cannot say (a pattern, a non-empty list). Every problem is one
`WSOLError` line naming the file, the key (dotted, with list indices: ``rows[2].where``)
and the value, e.g. ``experiments/x.yaml: seeds[1]: expected an integer, got 'a'``.

Supported annotations: ``str``, ``int``, ``float``, ``bool``, ``Any``, ``None``,
``Literal[...]``, ``list[T]``, ``dict[str, T]``, unions (``A | B``), dataclasses, and
``Annotated[T, Check]`` around any of them. A ``None`` value counts as absent: an
optional key's default applies, a required one is missing. Field metadata ``doc`` is the
key's description (`keys_doc` lists them), ``hint`` a sentence added to its errors
(both set with `doc`).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from wsol.errors import WSOLError


@dataclass(frozen=True)
class Check:
    """A condition on a value beyond its type: ``test(value)`` true, else "expected
    ``what``"."""

    test: Callable[[Any], bool]
    what: str


def matches(pattern: str, what: str) -> Check:
    """A string matching the regular expression ``pattern`` (described as ``what``)."""
    rx = re.compile(pattern)
    return Check(lambda v: bool(rx.match(v)), what)


NONEMPTY = Check(lambda v: len(v) > 0, "at least one entry")


def key_path(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _union_args(tp: Any) -> tuple | None:
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return None


def describe(tp: Any) -> str:
    """What a value of the annotation ``tp`` is, in words (for error messages)."""
    if get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        checks = [c.what for c in extra if isinstance(c, Check)]
        if base is Any and checks:
            return "; ".join(checks)
        return describe(base) + (f" ({'; '.join(checks)})" if checks else "")
    args = _union_args(tp)
    if args is not None:
        return " or ".join(describe(a) for a in args)
    if tp is Any:
        return "any value"
    if tp is type(None):
        return "null"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is list:
        (item,) = get_args(tp)
        return f"a list of {_plural(describe(item))}"
    if get_origin(tp) is dict:
        _, value = get_args(tp)
        return f"a mapping of names to {_plural(describe(value))}"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    return getattr(tp, "__name__", str(tp))


def _plural(text: str) -> str:
    for one, many in (
        ("a string", "strings"),
        ("an integer", "integers"),
        ("a number", "numbers"),
        ("a mapping", "mappings"),
        ("a list", "lists"),
    ):
        if text.startswith(one):
            return many + text[len(one) :]
    return text


def _fail(file: str, where: str, tp: Any, value: Any, hint: str = "") -> WSOLError:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    msg = f"{file}: {where}: expected {describe(tp)}, got {text}"
    return WSOLError(msg + (f"; {hint}" if hint else ""))


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _accepts_kind(tp: Any, kind: str) -> bool:
    if get_origin(tp) is Annotated:
        return _accepts_kind(get_args(tp)[0], kind)
    if tp is Any:
        return True
    if get_origin(tp) is dict or dataclasses.is_dataclass(tp):
        return kind == "mapping"
    if get_origin(tp) is list:
        return kind == "list"
    return kind == "scalar"


#: the scalar types of the schema and what a YAML value of each must be (bool is no int)
_SCALARS = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def convert(value: Any, tp: Any, file: str, where: str, hint: str = "") -> Any:
    """``value`` checked against the annotation ``tp`` (containers converted item by
    item, dataclasses built); `WSOLError` naming ``file`` and ``where`` otherwise."""
    if get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        out = convert(value, base, file, where, hint)
        for check in extra:
            if isinstance(check, Check) and not check.test(out):
                raise _fail(file, where, tp, value, hint)
        return out
    args = _union_args(tp)
    if args is not None:
        if value is None and type(None) in args:
            return None
        # the member that takes this kind of value decides (its own, precise, message)
        fitting = [a for a in args if a is not type(None) and _accepts_kind(a, _kind(value))]
        if len(fitting) == 1:
            return convert(value, fitting[0], file, where, hint)
        for a in fitting:
            try:
                return convert(value, a, file, where, hint)
            except WSOLError:
                continue
        raise _fail(file, where, tp, value, hint)
    if tp is Any:
        return value
    if tp is type(None):
        if value is not None:
            raise _fail(file, where, tp, value, hint)
        return None
    if tp in _SCALARS:
        if not _SCALARS[tp](value):
            raise _fail(file, where, tp, value, hint)
        return value
    if get_origin(tp) is Literal:
        if value not in get_args(tp):
            raise _fail(file, where, tp, value, hint)
        return value
    if get_origin(tp) is list:
        if not isinstance(value, list):
            raise _fail(file, where, tp, value, hint)
        (item,) = get_args(tp)
        return [convert(v, item, file, key_path(where, i), hint) for i, v in enumerate(value)]
    if get_origin(tp) is dict:
        if not isinstance(value, Mapping):
            raise _fail(file, where, tp, value, hint)
        _, item = get_args(tp)
        return {
            str(k): convert(v, item, file, key_path(where, str(k)), hint) for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return build(tp, value, file, where)
    raise TypeError(f"schema: unsupported annotation {tp!r}")


def build(cls: type, raw: Any, file: str, where: str = "", retired: Mapping[str, str] = {}):
    """An instance of the dataclass ``cls`` from the mapping ``raw``: unknown keys,
    missing required keys and values of the wrong type are one `WSOLError` each (the
    first found). ``retired``: former key -> what replaces it (said with the error)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if not isinstance(raw, Mapping):
        raise _fail(file, where or "the file", cls, raw)
    unknown = sorted(str(k) for k in raw if str(k) not in fields)
    if unknown:
        said = "; ".join(f"{k}: {retired[k]}" for k in unknown if k in retired)
        at = f"{file}: {where}" if where else file
        raise WSOLError(
            f"{at}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
            + (f" ({said})" if said else "")
        )
    hints = _hints(cls)
    values = {}
    for name, f in fields.items():
        value = raw.get(name)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if value is None:
            if required:
                hint = f.metadata.get("hint", "")
                raise WSOLError(
                    f"{file}: {key_path(where, name)} is missing" + (f": {hint}" if hint else "")
                )
            continue
        values[name] = convert(
            value, hints[name], file, key_path(where, name), f.metadata.get("hint", "")
        )
    return cls(**values)


def doc(text: str, hint: str = "") -> dict[str, str]:
    """A field's metadata: its description and an optional ``hint`` added to its errors
    (``field(default=..., metadata=doc("..."))``)."""
    return {"doc": text, "hint": hint}


def keys_doc(cls: type, indent: str = "") -> list[str]:
    """One line per key of the dataclass ``cls``: name, what it holds, required or not."""
    hints = _hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        lines.append(
            f"{indent}{f.name} ({'required' if required else 'optional'}; {describe(hints[f.name])}): "
            f"{f.metadata.get('doc', '')}"
        )
    return lines
