"""Requests: what a command asks the library for, as keyword-only dataclasses, and the one error that names a request's
fields.

Every command of the command line fills in a request and makes one call into the library; a value the library cannot
honour is refused with a :class:`RequestError` whose message names the field with :func:`field`. The Python API spells
a field as it is spelled in the request (``per_class``); the command line spells it as its flag (``--per-class``)
through one table built from its parser, so a renamed flag changes one place and no message below the command line
quotes a flag.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["RequestError", "field", "spell"]

_MARK = "\x1f"  # a control character no message holds: the bounds of a field's name inside a message
_FIELD = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_.]*){_MARK}")


def field(name: str) -> str:
    """A request field's name, marked inside a message so that each front end spells it its own way."""
    return f"{_MARK}{name}{_MARK}"


def spell(text: str, spelling: Callable[[str], str] = str) -> str:
    """``text`` with every marked field spelled by ``spelling`` (default: as the request names it)."""
    return _FIELD.sub(lambda m: spelling(m.group(1)), text)


class RequestError(ValueError):
    """A request value that cannot be honoured (out of range, not a length the model decodes, too few images, ...).
    ``str()`` names fields as the request does; :meth:`spelled` as another front end does."""

    def spelled(self, spelling: Callable[[str], str]) -> str:
        """The message with each field spelled by ``spelling`` (the command line: its flags)."""
        return spell(super().__str__(), spelling)

    def __str__(self) -> str:
        return self.spelled(str)
