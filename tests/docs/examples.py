"""Run the documentation's examples: every fenced block of a page, in order, in one temporary folder per page.

* ``python`` blocks run in one namespace per page (what one block defines, the next uses);
* ``bash`` blocks run each ``restok ...`` command (``\\`` continuations joined) through the CLI in this process;
  commands behind a launcher (``torchrun ... -m restok``, ``accelerate launch ... -m restok``, ``srun``) are parsed;
  other commands (``pip``, ``sbatch``, ``mkdocs``) are not run;
* a block whose first line is ``# needs: ...`` (released weights, a GPU, ImageNet, time) is not run: its Python is
  compiled and its ``restok`` commands are parsed by the real parser, so a renamed flag or a typo fails;
* a ``yaml`` (or ``json``) block whose first line is ``# file: NAME`` is written to NAME for the commands after it.

Each page's folder holds ``fid_inception.pt``, a small random-weight TorchScript stand-in for the FID Inception (the
real one is a 90 MB file no wheel installs by itself), so the evaluation examples run as written.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "blocks", "commands", "parse_command", "run_page"]

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
LAUNCHERS = ("torchrun", "accelerate", "srun", "python -m torch.distributed.run")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, text and line number."""

    lang: str
    text: str
    line: int

    @property
    def needs(self) -> str | None:
        """What the block needs that a test machine lacks (its ``# needs:`` line), or None: it runs."""
        first = self.text.lstrip().splitlines()[0] if self.text.strip() else ""
        m = re.match(r"#\s*needs:\s*(.+)", first)
        return m.group(1).strip() if m else None


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text (indentation of list items removed)."""
    out = []
    for m in FENCE.finditer(text):
        indent = len(m.group("indent"))
        body = "\n".join(line[indent:] for line in m.group("body").splitlines())
        out.append(Block(m.group("lang").lower(), body, text[: m.start()].count("\n") + 1))
    return out


def commands(bash: str) -> list[list[str]]:
    """The commands of a shell block as argument lists (continuations joined, comments and blank lines dropped)."""
    joined = re.sub(r"\\\n\s*", " ", bash)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        for part in (p.strip() for p in line.split("&&")):
            if part:
                out.append(shlex.split(part))
    return out


def tolerated(argv: list[str]) -> tuple[list[str], bool]:
    """A command without a trailing ``|| true``, and whether it had one (a finding's exit status 1 is then expected;
    an error, 2, never is)."""
    if argv[-2:] == ["||", "true"]:
        return argv[:-2], True
    return argv, False


def restok_args(argv: list[str]) -> list[str] | None:
    """The ``restok`` arguments of a command line (``restok ...``, ``python -m restok ...`` or behind a launcher), or
    None when it does not run restok."""
    if argv and argv[0] == "restok":
        return argv[1:]
    for i in range(len(argv) - 2):
        if argv[i] == "-m" and argv[i + 1] == "restok":
            return argv[i + 2 :]
    return None


def parse_command(args: list[str]) -> str | None:
    """Parse ``restok ARGS`` with the real parser, running nothing: None when it parses, else argparse's message."""
    from restok.cli import _parse, build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            _parse(build_parser(), args)
    except SystemExit as e:
        if e.code not in (0, None):
            return err.getvalue().strip() or f"exit {e.code}"
    return None


_STAND_IN: list[bytes] = []  # the stand-in's bytes, scripted once per process


def _inception_stand_in(path: Path) -> None:
    """A TorchScript FID Inception stand-in (random weights) where the examples look for the real one."""
    if not _STAND_IN:
        import torch

        from tests.helpers import TinyInception

        torch.manual_seed(0)
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(TinyInception()), buffer)
        _STAND_IN.append(buffer.getvalue())
    path.write_bytes(_STAND_IN[0])


def run_page(page: Path, workdir: Path) -> list[str]:
    """Run every block of ``page`` in ``workdir``; the problems found, one line each (empty: the page holds)."""
    from restok.cli import main

    problems: list[str] = []
    namespace: dict[str, object] = {"__name__": "__docs__"}
    _inception_stand_in(workdir / "fid_inception.pt")
    old = Path.cwd()
    os.chdir(workdir)
    try:
        for b in blocks(page.read_text()):
            where = f"{page.name}:{b.line}"
            if b.lang in ("yaml", "json") and b.text.startswith("# file:"):
                name = b.text.splitlines()[0].split(":", 1)[1].strip()
                Path(name).write_text(b.text)
            elif b.lang == "python":
                code = compile(b.text, where, "exec")
                if b.needs is None:
                    try:
                        exec(code, namespace)
                    except Exception as e:  # noqa: BLE001 - reported with the block that raised
                        problems.append(f"{where}: the Python example raises {type(e).__name__}: {e}")
            elif b.lang in ("bash", "sh", "shell"):
                for line in commands(b.text):
                    argv, lenient = tolerated(line)
                    args = restok_args(argv)
                    if args is None:
                        continue
                    launched = argv[0] != "restok" and argv[:2] != ["python", "-m"]
                    if b.needs is not None or launched:
                        msg = parse_command(args)
                        if msg:
                            problems.append(f"{where}: `restok {' '.join(args)}` does not parse: {msg}")
                        continue
                    err = io.StringIO()
                    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                        code = main(args)
                    if code != 0 and not (lenient and code == 1):
                        problems.append(f"{where}: `restok {' '.join(args)}` exits {code}: {err.getvalue()[-300:]}")
    finally:
        os.chdir(old)
    return problems
