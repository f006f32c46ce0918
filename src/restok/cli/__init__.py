"""The ``restok`` command line: one module per command group, every command the same shape (:mod:`.base`), shared
option sets declared once (:mod:`.options`).

Groups: images to tokens and back (:mod:`.tokenize`), generation (:mod:`.generate`), checkpoints and presets
(:mod:`.models`), training and code sets (:mod:`.train`), evaluation (:mod:`.eval`), plots (:mod:`.plot`) and the
demos (:mod:`.apps`). :func:`main` runs a command line in-process and returns its exit status: 0 done, 1 done but
some input files failed (each named), 2 error (one line; ``--debug`` for the traceback), 128 + N when stopped by
signal N. The top layer: it imports everything below it, nothing imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..runtime.launch import STARTUP_TIMEOUT_ENV, world_size_or_one
from ..runtime.network import settle_offline
from ..runtime.requests import RequestError
from ..runtime.version import __version__
from . import apps, data, eval, generate, models, plot, tokenize, train
from .base import EXIT_ERROR, CLIError, Command, add_command, flag_spelling
from .options import Parser

__all__ = ["main", "build_parser", "COMMANDS", "CLIError"]

COMMANDS: tuple[Command, ...] = (
    *tokenize.COMMANDS,
    *generate.COMMANDS,
    *models.COMMANDS,
    *apps.COMMANDS,
    *train.COMMANDS,
    *data.COMMANDS,
    *eval.COMMANDS,
    *plot.COMMANDS,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command of :data:`COMMANDS`."""
    p = Parser(prog="restok", description="ResTok tokenizer and HAR generator (arXiv 2601.03955).")
    p.add_argument("--version", action="version", version=f"restok {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command")
    for command in COMMANDS:
        add_command(sub, command)
    return p


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may sit anywhere among the options of ``train`` (argparse only takes one
    run of them); no command means ``info``."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "info"])
    return args


# What the collective libraries say when another process of the run died or became unreachable (gloo, NCCL, the
# c10d store); the raw text names a socket, not what happened.
_PEER_LOST = (
    "Connection closed by peer",
    "Connection reset by peer",
    "NCCL communicator was aborted",
    "ProcessGroupNCCL",
    "DistNetworkError",
    "Broken pipe",
    "recvValueWithTimeout failed",
    "Socket Timeout",
    "Timed out waiting",
)


def _peer_lost(e: BaseException) -> str | None:
    """One line for a collective that failed because another process (on this node or another) stopped, else None."""
    if world_size_or_one() < 2 or isinstance(e, OSError):  # one process, or a pipe/download error
        return None
    text = f"{type(e).__name__}: {e}"
    if not any(k in text for k in _PEER_LOST):
        return None
    first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return (
        f"another process of this run stopped or became unreachable ({first}); this process stops too. Checkpoints "
        "written so far are intact: start the run again on every node with --resume"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``restok`` command line (``argv``, default ``sys.argv[1:]``) and return its exit status."""
    settle_offline()  # resolved once, before any command touches a Hub client
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as e:  # argparse's own errors and --help/--version
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_ERROR
    if getattr(args, "startup_timeout", None) is not None:  # read where the processes join (runtime.launch)
        os.environ[STARTUP_TIMEOUT_ENV] = repr(args.startup_timeout)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError as e:  # ours name the model and the memory; the allocator's say nothing
        print(f"error: {e}" if str(e) else "error: out of memory (try a smaller --batch-size)", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - every failure reaches the user as one message, the traceback only with --debug
        if args.debug:
            raise
        print(_one_line(e, getattr(args, "parser", None)), file=sys.stderr)
        return EXIT_ERROR


def _one_line(e: BaseException, parser: argparse.ArgumentParser | None) -> str:
    """The one ``error:`` line of a failure: a request's fields spelled as the command's flags; the exception's type
    named (with the --debug hint) when it is not one of the kinds that speak to the user."""
    expected = isinstance(e, (CLIError, ValueError, OSError, RuntimeError, ImportError))
    text = _peer_lost(e) or (e.spelled(flag_spelling(parser)) if isinstance(e, RequestError) else str(e))
    text = text or type(e).__name__
    return f"error: {text}" if expected else f"error: {type(e).__name__}: {text} (run with --debug for the traceback)"
