"""The command-line reference as Markdown pages, generated from the parser itself: every command and option with its
help, default, choices and range -- the same objects ``--help`` prints, so the documentation cannot drift from it.
The documentation site's build (``scripts/docs_hooks.py``) writes these pages under ``reference/cli/``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

__all__ = ["cli_pages", "command_paths"]


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-parsers of ``p`` by name (none for a leaf command)."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_paths(p: argparse.ArgumentParser | None = None, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of the CLI (``("eval", "compare")``, ...), groups and leaves, in the parser's order."""
    if p is None:
        from . import build_parser

        p = build_parser()
    for name, sub in _subcommands(p).items():
        yield (*prefix, name)
        yield from command_paths(sub, (*prefix, name))


def _parser_of(path: tuple[str, ...]) -> argparse.ArgumentParser:
    from . import build_parser

    p = build_parser()
    for name in path:
        p = _subcommands(p)[name]
    return p


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _values(action: argparse.Action) -> str:
    """Choices or the numeric range an option takes (from the type that checks it)."""
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        return ", ".join(f"`{c}`" for c in action.choices)
    rng = getattr(action.type, "range", None)
    if rng is not None:
        kind = getattr(action.type, "kind", float)
        return f"{'an integer' if kind is int else 'a number'} {rng.describe()}"
    return ""


def _default(action: argparse.Action) -> str:
    if action.nargs in (argparse.ZERO_OR_MORE, argparse.OPTIONAL) and not action.option_strings:
        return "none" if action.nargs == argparse.ZERO_OR_MORE else ""  # argparse marks a '*' positional required
    if action.required:
        return "required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if isinstance(action, argparse._StoreTrueAction) else "on"
    if action.default in (None, argparse.SUPPRESS):
        return ""
    return f"`{action.default}`"


def _option_rows(actions: list[argparse.Action]) -> list[str]:
    rows = ["| option | what it does | default | values |", "|---|---|---|---|"]
    for a in actions:
        if a.help == argparse.SUPPRESS or isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ", ".join(a.option_strings) if a.option_strings else (a.metavar or a.dest)
        meta = "" if not a.option_strings or a.nargs == 0 else f" {a.metavar or a.dest.upper()}"
        rows.append(f"| `{name}{meta}` | {_cell(a.help or '')} | {_default(a)} | {_values(a)} |")
    return rows if len(rows) > 2 else []


def command_page(path: tuple[str, ...]) -> str:
    """The Markdown page of one command: what it does, its usage and each group of options."""
    p = _parser_of(path)
    title = "restok " + " ".join(path)
    lines = [f"# `{title}`", "", _cell(p.description or ""), "", "```text", p.format_usage().strip(), "```", ""]
    subs = _subcommands(p)
    if subs:
        lines += ["Subcommands:", ""]
        lines += [
            f"- [`{title} {n}`]({'-'.join((*path, n))}.md): {_cell(s.description or '')}" for n, s in subs.items()
        ]
        lines.append("")
    for g in p._action_groups:
        rows = _option_rows(g._group_actions)
        if rows:
            heading = "Arguments" if g.title == "positional arguments" else (g.title or "options").capitalize()
            lines += [f"## {heading}", "", *rows, ""]
    return "\n".join(lines)


def cli_pages() -> dict[str, str]:
    """``{relative path: Markdown}`` of the CLI reference: an index and one page per command."""
    from . import build_parser

    root = build_parser()
    index = [
        "# Command line",
        "",
        "Generated from the parser `restok --help` prints (`restok.cli.reference`). Every command that runs a model "
        "takes `--device`; `--debug` before the command shows full tracebacks. Exit status: 0 done, 1 done but some "
        "inputs failed (each named), 2 an error (one line), 128 + N when stopped by signal N.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    pages = {}
    for path in command_paths(root):
        slug = "-".join(path)
        pages[f"{slug}.md"] = command_page(path)
        index.append(f"| [`restok {' '.join(path)}`]({slug}.md) | {_cell(_parser_of(path).description or '')} |")
    pages["index.md"] = "\n".join(index) + "\n"
    return pages
