"""Typed configuration records: one way to build them from plain data, check their fields and write them back.

Every config of restok (the models', sampling's, training's) is a frozen dataclass deriving :class:`Config`, so a
dict from ``config.json``, a YAML file or ``key=value`` overrides becomes a config through :meth:`Config.from_dict`
alone: unknown keys are named, nested configs are built from their dicts, lists become tuples, and every field is
type-checked (``"no"`` for a boolean, ``10.7`` for an integer) before the class validates its values.

Every number is checked the same way wherever it comes from (a file, ``key=value``, the Python API): a float must be
finite, and a field declared with :func:`setting` must lie in its range (``ge``/``gt``/``le``/``lt``, for each item
of a tuple). The command line's numeric options use the same :class:`Range`, so a range is written once.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "Config",
    "check_field_types",
    "config_from_dict",
    "replace_checked",
    "plain",
    "Range",
    "setting",
    "field_range",
    "numeric_fields",
]

C = TypeVar("C", bound="Config")


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``ge``/``gt`` below, ``le``/``lt`` above (None: unbounded on that side); finite always."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, value: float) -> bool:
        return math.isfinite(value) and not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def describe(self) -> str:
        """The range in words: ">= 1", "in [0, 1)", "in (0, 1]", "a finite number"."""
        lo = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        hi = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return (">= " if lo[0] == "[" else "> ") + lo[1:]
        if hi:
            return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
        return "a finite number"

    def check(self, value: Any, name: str) -> None:
        """Raise a ValueError naming ``name`` unless ``value`` (a number, or a tuple of them) lies in the range."""
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in self:
                raise ValueError(f"{name} must be {self.describe()}, got {_short(v)}")


def _num(x: float) -> str:
    """A bound as written in messages (``1``, ``0.5``, ``1e+06``)."""
    if isinstance(x, int):
        return str(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else f"{x:g}"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    default_factory: Any = dataclasses.MISSING,
    **metadata: Any,
) -> Any:
    """A dataclass field whose number (or each number of its tuple) must lie in the range given; ``metadata`` carries
    anything else a field describes (the command line's help text)."""
    meta = {**metadata, "range": Range(ge, gt, le, lt)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_range(f: dataclasses.Field) -> Range | None:
    """The declared range of a config field (None: none declared)."""
    return f.metadata.get("range")


def numeric_fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every field of a config class (and, dotted, of its nested configs) that holds numbers: name -> (field, type)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[dataclasses.Field, Any]] = {}
    for f in dataclasses.fields(cls):
        nested = _nested_class(hints[f.name])
        if nested is not None:
            out.update({f"{f.name}.{k}": v for k, v in numeric_fields(nested).items()})
        elif _is_numeric(hints[f.name]):
            out[f.name] = (f, hints[f.name])
    return out


def _is_numeric(t: Any) -> bool:
    """Whether an annotation holds numbers (``int``, ``float | None``, ``tuple[float, float]``, ...), booleans aside."""
    if t in (int, float):
        return True
    return typing.get_origin(t) in (typing.Union, types.UnionType, tuple) and any(
        _is_numeric(a) for a in typing.get_args(t) if a is not Ellipsis
    )


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
        return "a list of " + (
            plural.get(args[0], "values") if len(args) == 2 and args[1] is Ellipsis else f"{len(args)} values"
        )
    if dataclasses.is_dataclass(t):
        return f"a mapping of {t.__name__} settings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        t, getattr(t, "__name__", str(t))
    )


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
        try:
            return ok, float(value) if ok else value
        except OverflowError:  # an integer beyond any float
            return False, value
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
            raise ValueError(f"{type(obj).__name__}.{f.name} must be {_type_name(hints[f.name])}, got {_short(value)}")
        (field_range(f) or Range()).check(
            fixed, f"{type(obj).__name__}.{f.name}"
        )  # finite always, in range if declared
        if fixed is not value:
            object.__setattr__(obj, f.name, fixed)


def _short(value: Any) -> str:
    """A value as an error message shows it (a huge integer cut short)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def _nested_class(annotation: Any) -> type | None:
    """The config class a field holds (``PixelCNNConfig``, ``OptimConfig | None``, ...), if any."""
    candidates = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
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
            try:
                value = config_from_dict(nested, value, f"{what} {key}")
            except ValueError as e:  # name the key the user wrote (optimizer or disc_optimizer?)
                raise ValueError(f"{key}: {e}" if not str(e).startswith(f"unknown {what} {key}") else str(e)) from None
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
