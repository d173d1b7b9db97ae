"""Typed config sections: dataclasses whose fields carry their help text, built from plain data with checks.

Every key is checked against the dataclass and every value against its type hint, so a typo or a wrong type in a
config file is a one-line error naming the key's full path, reported before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from harness.errors import UsageError


def option(default: Any = dataclasses.MISSING, help: str = "", *, identity: bool = True, **kwargs: Any) -> Any:
    """A dataclass field with its help text (shown by `w2s run --explain`). `identity=False` marks an option that does
    not change a cell's samples (what is judged, how results are reported), so it is left out of the cell's identity."""
    if isinstance(default, list | dict):
        kwargs["default_factory"] = lambda d=default: type(d)(d)
        default = dataclasses.MISSING
    return dataclasses.field(default=default, metadata={"help": help, "identity": identity}, **kwargs)


def identity_fields(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain data, without the options marked `identity=False`."""
    keep = {f.name for f in dataclasses.fields(obj) if f.metadata.get("identity", True)}
    return {k: v for k, v in dataclasses.asdict(obj).items() if k in keep}


def build(cls: type, data: Any, where: str) -> Any:
    """An instance of dataclass `cls` from a mapping, rejecting unknown keys and values of the wrong type."""
    if not isinstance(data, dict):
        raise UsageError(f"{where} must be a mapping of keys to values, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise UsageError(f"unknown key {_join(where, unknown[0])}; known keys there: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UsageError(f"{_join(where, name)} is required ({f.metadata.get('help', 'no default')})")
    return cls(**kwargs)


def convert(tp: Any, value: Any, where: str) -> Any:
    """`value` checked (and, for nested sections, built) against type hint `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, value, where)
            except UsageError:
                continue
        raise UsageError(f"{where} must be {_name(tp)}, got {_kind(value)}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin is list:
        _expect(isinstance(value, list), tp, value, where)
        return [convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        _expect(isinstance(value, list | tuple), tp, value, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        _expect(len(value) == len(args), tp, value, where)
        return tuple(convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        _expect(isinstance(value, dict), tp, value, where)
        return {str(k): convert(args[1], v, _join(where, str(k))) for k, v in value.items()}
    if tp is float:
        _expect(isinstance(value, int | float) and not isinstance(value, bool), tp, value, where)
        return float(value)
    if tp is int:
        _expect(isinstance(value, int) and not isinstance(value, bool), tp, value, where)
        return value
    _expect(isinstance(value, tp), tp, value, where)
    return value


def describe(cls: type, prefix: str = "", defaults: Any = None) -> list[str]:
    """One line per key of `cls` (nested sections expanded): name, type, default and help. `defaults` is the
    instance a nested section defaults to, whose values (e.g. a task's own response budget) are the defaults shown."""
    hints, lines = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        key, tp = _join(prefix, f.name), hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if defaults is not None:
            default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(tp):
            lines += describe(tp, key, default)
            continue
        required = default is None and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        shown = "required" if required else f"default {default!r}"
        lines.append(f"{key}: {_name(tp)}, {shown}. {f.metadata.get('help', '')}".rstrip())
    return lines


def _expect(ok: bool, tp: Any, value: Any, where: str) -> None:
    if not ok:
        raise UsageError(f"{where} must be {_name(tp)}, got {_kind(value)}")


def _name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is not None:
        return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, tp.__name__)


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
