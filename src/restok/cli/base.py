"""The shape every ``restok`` command has (as ``accelerate``'s and ``diffusers``' CLIs give each command one shape):
a :class:`Command` names itself, declares its options in one function and runs in another, or holds subcommands;
:func:`add_command` registers any of them the same way. Also the one-line error and the exit statuses."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLIError",
    "Command",
    "add_command",
    "EXIT_OK",
    "EXIT_INPUTS_FAILED",
    "EXIT_ERROR",
    "batches",
    "unique_stems",
]

# Exit status: 0 done, 1 done but some input files could not be read (each named), 2 error (nothing done), 128 + N
# interrupted by signal N.
EXIT_OK = 0
EXIT_INPUTS_FAILED = 1
EXIT_ERROR = 2


class CLIError(Exception):
    """An error reported to the user as one line."""


@dataclass(frozen=True)
class Command:
    """One command or command group: ``arguments`` declares its options on its parser, ``run`` does the work and
    returns the exit status; a group has ``subcommands`` instead (dispatched by the table they make)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], int] | None = None
    subcommands: tuple[Command, ...] = ()


def add_command(sub: Any, command: Command) -> argparse.ArgumentParser:
    """Register ``command`` (and its subcommands) on an ``add_subparsers()`` object."""
    p = sub.add_parser(command.name, help=command.help, description=command.help)
    if command.arguments is not None:
        command.arguments(p)
    if command.subcommands:
        inner = p.add_subparsers(
            dest=f"{command.name}_command",
            required=True,
            metavar="{" + ",".join(c.name for c in command.subcommands) + "}",
        )
        for c in command.subcommands:
            add_command(inner, c)
    elif command.run is not None:
        p.set_defaults(func=command.run)
    return p


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Consecutive chunks of ``items``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def unique_stems(paths: Sequence[str]) -> list[str]:
    """Output names for input files: their stems, with the parent folder (then a counter) added where two collide, so
    that ``a/x.png`` and ``b/x.png`` never overwrite each other."""
    from pathlib import Path

    plain = [Path(p).stem for p in paths]
    stems = [f"{Path(p).parent.name or 'root'}_{s}" if plain.count(s) > 1 else s for p, s in zip(paths, plain)]
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}_{seen[s]}")
    return out
