"""The shape every ``restok`` command has (as ``accelerate``'s and ``diffusers``' CLIs give each command one shape): a
:class:`Command` names itself, declares its options in one function and runs in another -- parse, fill in a keyword-only
request (:func:`request`: each field from the option of the same name), one call into the library, print -- or holds
subcommands; :func:`add_command` registers any of them the same way. Also the one-line error, the exit statuses, and
the one table that spells a request's fields as the command's flags (:func:`flag_spelling`)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..data.images import unique_stems
from ..pipelines.tokens import batches

__all__ = [
    "CLIError",
    "Command",
    "add_command",
    "request",
    "flag_spelling",
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

R = TypeVar("R")


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
        p.set_defaults(func=command.run, parser=p)  # the parser spells a request's fields as its flags
    return p


def request(cls: Callable[..., R], args: argparse.Namespace, **given: Any) -> R:
    """The request ``cls`` from the parsed options: each of its fields from the option of the same name (argparse's
    ``dest``), unless ``given``; a tuple field takes the option's list as a tuple; ``progress`` is the shared
    ``--no-progress`` turned around, for every command that has both."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "progress" and "progress" not in given and hasattr(args, "no_progress"):
            values["progress"] = not args.no_progress
            continue
        if f.name in given or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **given)


# Request fields that no option of the same name sets, and how a command line says them.
FIELD_FLAGS = {"changes": "the sampling options", "options": "the evaluation options", "figure": "the plot command"}


def flag_spelling(parser: argparse.ArgumentParser | None) -> Callable[[str], str]:
    """How ``parser``'s command spells a request field in messages: its option (``per_class`` -> ``--per-class``, its
    first long spelling), a positional argument's name in capitals, or the field's name when no option sets it."""
    table: dict[str, str] = dict(FIELD_FLAGS)
    for action in parser._actions if parser is not None else ():
        if action.dest in (argparse.SUPPRESS, "help"):
            continue
        long = [o for o in action.option_strings if o.startswith("--")]
        table[action.dest] = long[0] if long else str(action.metavar or action.dest).upper()
    return lambda name: table.get(name, table.get(name.rpartition(".")[2], name))
