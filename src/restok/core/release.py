"""Reading another codebase's release strictly: its config values by key path, its weights' shapes by tensor name.

The layouts of the families restok loads (ResTok's and HAR's official code, TiTok, One-D-Piece, LlamaGen) read
configs written by other code and weights whose shapes say the model's sizes. Every value goes through
:class:`ReleaseConfig` -- a boolean must be ``true``/``false`` (``"no"`` and ``"false"`` are strings, not booleans),
an integer must be integral (``64.9`` is refused, not truncated), a number finite -- and every shape through
:class:`WeightShapes`, which knows each tensor's rank and refuses zero-sized tensors. An error names the key path or
the tensor and what was expected; :meth:`ReleaseConfig.build` turns the config class's own range errors (``0``,
``-1``, ``1e30``) into the key path the release wrote, so the one line says which key of which file to fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

__all__ = ["REQUIRED", "ReleaseError", "ReleaseConfig", "WeightShapes", "zero_sized"]

T = TypeVar("T")
REQUIRED: Any = object()  # the default of a key the release must set
_WORDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


class ReleaseError(ValueError):
    """A release's config value or weight tensor that cannot be read; ``source`` is ``"config"`` or ``"weights"``
    (the loader puts the file's name in front)."""

    def __init__(self, message: str, source: str = "config") -> None:
        super().__init__(message)
        self.source = source


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..."


def _strict(value: Any, kind: type) -> tuple[bool, Any]:
    """(fits, value) of ``value`` read as ``kind``: no conversion a reader of the release could not have meant."""
    if kind is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind is str:
        return (kind is str and isinstance(value, str)), value
    if kind is int:
        if isinstance(value, int):
            return True, value
        # an integral float (``256.0`` in a dump) is that integer; ``64.9`` or NaN is no integer
        return (math.isfinite(value) and value.is_integer()), (int(value) if math.isfinite(value) else value)
    return math.isfinite(value), float(value)


class ReleaseConfig:
    """A release's (nested) config read strictly; ``path`` is the key path of this section (``model.vq_model.``)."""

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ReleaseError(f"{path.rstrip('.') or 'the config'} must be a mapping, got {_short(data)}")
        self.data, self.path = data, path
        self.origins: dict[str, str] = {}  # our config field -> the release's key path it was read from

    def has(self, key: str) -> bool:
        """Whether the section sets ``key``."""
        return key in self.data

    def section(self, key: str, required: bool = False) -> ReleaseConfig:
        """The nested section ``key`` (empty when absent, unless ``required``)."""
        if key not in self.data or self.data[key] is None:
            if required:
                raise ReleaseError(f"{self.path}{key} is missing (expected a mapping)")
            return ReleaseConfig({}, f"{self.path}{key}.")
        return ReleaseConfig(self.data[key], f"{self.path}{key}.")

    def get(self, key: str, kind: type[T], default: Any = REQUIRED, optional: bool = False) -> T:
        """The value of ``key`` as ``kind`` (bool, int, float or str; ``optional``: null allowed), ``default`` when
        absent (no default: the key is required)."""
        if key not in self.data:
            if default is REQUIRED:
                raise ReleaseError(f"{self.path}{key} is missing (expected {_WORDS[kind]})")
            return default
        value = self.data[key]
        if value is None and optional:
            return None  # type: ignore[return-value]
        ok, read = _strict(value, kind)
        if not ok:
            raise ReleaseError(f"{self.path}{key} must be {_WORDS[kind]}, got {_short(value)}")
        return read

    def ints(self, key: str, default: Any = REQUIRED) -> tuple[int, ...]:
        """A list of integers (``channel_mult``)."""
        if key not in self.data:
            if default is REQUIRED:
                raise ReleaseError(f"{self.path}{key} is missing (expected a list of integers)")
            return tuple(default)
        value = self.data[key]
        items = [_strict(v, int) for v in value] if isinstance(value, (list, tuple)) else [(False, value)]
        if not value or not all(ok for ok, _ in items):
            raise ReleaseError(f"{self.path}{key} must be a non-empty list of integers, got {_short(value)}")
        return tuple(v for _, v in items)

    def choice(self, key: str, table: Mapping[str, T], default: Any = REQUIRED) -> T:
        """The entry of ``table`` that the string ``key`` names."""
        name = self.get(key, str, default)
        if name not in table:
            raise ReleaseError(f"{self.path}{key} is {_short(name)}; known: {sorted(table)}")
        return table[name]

    def read(self, fields: Mapping[str, tuple[str, type, Any]]) -> dict[str, Any]:
        """``{field: value}`` of our config from ``{field: (release key, kind, default)}``, remembering each origin."""
        out = {}
        for name, (key, kind, default) in fields.items():
            out[name] = self.get(key, kind, default)
            self.origins[name] = f"{self.path}{key}"
        return out

    def build(
        self,
        cls: Callable[..., T],
        origins: Mapping[str, str] | None = None,
        *,
        sized_by_weights: bool = False,
        **values: Any,
    ) -> T:
        """``cls(**values)``, its own errors (ranges, sizes that do not fit together) naming the release's key paths
        instead of our field names; an error of no field read here is the weights' when ``sized_by_weights``."""
        named = {**self.origins, **(origins or {})}
        try:
            return cls(**values)
        except (ValueError, TypeError, OverflowError) as e:
            text = str(e)
            title = getattr(cls, "__name__", "")
            for name, key in sorted(named.items(), key=lambda kv: -len(kv[0])):
                if f"{title}.{name} " in text:
                    raise ReleaseError(text.replace(f"{title}.{name} ", f"{key} ", 1)) from None
            if sized_by_weights:
                raise ReleaseError(f"{text} (sizes read off the weights' shapes)", "weights") from None
            raise ReleaseError(f"{text} (from {', '.join(sorted(set(named.values())))})" if named else text) from None


class WeightShapes:
    """The shapes of a release's tensors, each read with the rank it must have; a zero-sized or missing tensor, or one
    of another rank, is named."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.shapes = shapes

    def __contains__(self, name: object) -> bool:
        return name in self.shapes

    def keys(self) -> Collection[str]:
        """Every tensor name."""
        return self.shapes.keys()

    def dims(self, name: str, rank: int) -> tuple[int, ...]:
        """The shape of ``name``, which must have ``rank`` dimensions, none zero."""
        if name not in self.shapes:
            raise ReleaseError(f"tensor {name!r} is missing from the weights", "weights")
        shape = tuple(self.shapes[name])
        if len(shape) != rank or 0 in shape:
            raise ReleaseError(
                f"tensor {name!r} has shape {list(shape)}; expected {rank} dimension(s), none of them zero",
                "weights",
            )
        return shape

    def build(self, cls: Callable[..., T], **values: Any) -> T:
        """``cls(**values)`` for sizes read off the weights; its errors say so."""
        try:
            return cls(**values)
        except (ValueError, TypeError, OverflowError) as e:
            raise ReleaseError(f"{e} (sizes read off the weights' shapes)", "weights") from None

    def dim(self, name: str, rank: int, axis: int) -> int:
        """One dimension of ``name`` (see :meth:`dims`)."""
        return self.dims(name, rank)[axis]

    def numbered(self, prefix: str) -> list[int]:
        """The numbers N of the children ``prefix.N.`` the weights have, sorted."""
        found = {k[len(prefix) :].split(".")[0] for k in self.shapes if k.startswith(prefix)}
        return sorted(int(n) for n in found if n.isdigit())

    def count(self, prefix: str, what: str) -> int:
        """How many numbered children ``prefix.N.`` there are: at least one, numbered 0..N-1."""
        found = self.numbered(prefix)
        if not found or found != list(range(len(found))):
            raise ReleaseError(
                f"the weights have {'no' if not found else 'gaps in the'} {what} ({prefix}0., {prefix}1., ...)",
                "weights",
            )
        return len(found)


def zero_sized(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The first tensor with a zero-sized dimension, or None (such a tensor sizes nothing and divides by zero)."""
    return next((k for k, s in shapes.items() if 0 in tuple(s)), None)
