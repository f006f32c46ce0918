"""Typed configuration records: one way to build them from plain data, check their fields and write them back.

Every config of restok (the models', sampling's, training's) is a frozen dataclass deriving :class:`Config`, so a
dict from ``config.json``, a YAML file or ``key=value`` overrides becomes a config through :meth:`Config.from_dict`
alone: unknown keys are named, nested configs are built from their dicts, lists become tuples, and every field is
type-checked (``"no"`` for a boolean, ``10.7`` for an integer) before the class validates its values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, TypeVar

__all__ = ["Config", "check_field_types", "config_from_dict", "replace_checked", "plain"]

C = TypeVar("C", bound="Config")


def _type_name(t: Any) -> str:
    """A type annotation as the words an error message uses ("an integer", "a list of numbers", ...)."""
    if t is type(None):
        return "null"
    args = typing.get_args(t)
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        return "a list of " + (plural.get(args[0], "values") if len(args) == 2 and args[1] is Ellipsis else f"{len(args)} values")
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(t, getattr(t, "__name__", str(t)))


def _coerce(value: Any, t: Any) -> tuple[bool, Any]:
    """(fits, value) for ``value`` against the annotation ``t``; ints are accepted (as floats) for float fields."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is Any or dataclasses.is_dataclass(t):
        return (not dataclasses.is_dataclass(t) or isinstance(value, t)), value
    if origin in (typing.Union, types.UnionType):
        for a in args:
            ok, v = _coerce(value, a)
            if ok:
                return True, v
        return False, value
    if t is type(None):
        return value is None, value
    if t is bool:
        return isinstance(value, bool), value
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if t is str:
        return isinstance(value, str), value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False, value
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return False, value
        out = [_coerce(v, a) for v, a in zip(value, items)]
        return all(ok for ok, _ in out), tuple(v for _, v in out)
    if origin is dict:
        return isinstance(value, Mapping), value
    return True, value


def check_field_types(obj: Any) -> None:
    """Raise a ValueError naming the first field of a config dataclass whose value has the wrong type (``"no"`` for
    a boolean, ``10.7`` for an integer, ...); ints given for float fields become floats, lists for tuples tuples."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        nested = _nested_class(hints[f.name])
        if nested is not None and isinstance(value, Mapping):  # a nested config given as its dict
            value = config_from_dict(nested, value, f"{type(obj).__name__}.{f.name}")
        ok, fixed = _coerce(value, hints[f.name])
        if not ok:
            raise ValueError(f"{type(obj).__name__}.{f.name} must be {_type_name(hints[f.name])}, got {value!r}")
        if fixed is not value:
            object.__setattr__(obj, f.name, fixed)


def _nested_class(annotation: Any) -> type | None:
    """The config class a field holds (``PixelCNNConfig``, ``OptimConfig | None``, ...), if any."""
    candidates = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    found = [c for c in candidates if isinstance(c, type) and dataclasses.is_dataclass(c)]
    return found[0] if len(found) == 1 else None


def config_from_dict(cls: type[C], data: Mapping[str, Any], what: str | None = None) -> C:
    """Build the config ``cls`` from plain data: unknown keys named, nested configs built from their dicts, lists
    turned into tuples; the class then checks types and values. ``what`` names the data in messages."""
    what = what or getattr(cls, "config_name", "") or cls.__name__
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a mapping of settings, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown}; known: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        nested = _nested_class(hints[key])
        if nested is not None and isinstance(value, Mapping):
            value = config_from_dict(nested, value, f"{what} {key}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def replace_checked(cfg: C, overrides: Mapping[str, Any]) -> C:
    """``dataclasses.replace`` that names unknown fields instead of raising a bare TypeError."""
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {type(cfg).__name__} field(s) {unknown}; valid fields: {sorted(names)}")
    return dataclasses.replace(cfg, **overrides)


def plain(value: Any) -> Any:
    """A config's value as JSON/YAML-ready data: configs as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


class Config:
    """Base of every config dataclass: built from plain data, written back to it, copied with changes.
    ``config_name`` names the settings in messages ("unknown training setting(s) ...")."""

    config_name: str = ""

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Build from a dict (``config.json``, YAML), naming unknown keys."""
        return config_from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (nested configs as dicts, tuples as lists)."""
        return plain(self)

    def replace(self: C, **overrides: Any) -> C:
        """A copy with some fields changed (validated)."""
        return replace_checked(self, overrides)
