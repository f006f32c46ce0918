"""The documentation cannot rot: every example of every page (and of the README) runs, or -- where it needs released
weights, a GPU or ImageNet -- parses with the real parser; a renamed flag in a page fails here; the site builds
strictly with every command and every public name of ``restok`` in its reference; the quick-start notebook runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.examples import blocks, commands, parse_command, restok_args, run_page
from tests.helpers import require

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]


@pytest.mark.slow  # each page loads the embedded models and runs its commands: seconds to tens of seconds
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_example_of_the_page_runs_or_parses(page: Path, tmp_path: Path) -> None:
    problems = run_page(page, tmp_path)
    assert not problems, "\n".join(problems)


def test_a_renamed_flag_in_a_page_is_caught(tmp_path: Path) -> None:
    page = Path(__file__).parent / "fixtures" / "renamed-flag.md"
    problems = run_page(page, tmp_path)
    assert len(problems) == 2, problems
    assert "--guidance" in problems[0] and "unrecognized arguments" in problems[0]
    assert "--tokenz" in problems[1]  # also behind "# needs:", where the command is only parsed


def test_the_example_reader_reads_what_a_shell_would() -> None:
    text = (
        "```bash\n# needs: a GPU\nrestok generate --classes 1 \\\n    --out x  # a comment\ncd a && restok info\n```\n"
    )
    (b,) = blocks(text)
    assert b.needs == "a GPU"
    argv = commands(b.text)
    assert argv == [["restok", "generate", "--classes", "1", "--out", "x"], ["cd", "a"], ["restok", "info"]]
    assert restok_args(["torchrun", "--nproc-per-node", "8", "-m", "restok", "info"]) == ["info"]
    assert parse_command(["info"]) is None and "invalid choice" in parse_command(["infoo"])


@pytest.mark.slow
def test_the_site_builds_strictly_with_every_command_and_public_name(tmp_path: Path) -> None:
    require("mkdocs")
    import restok
    from restok.cli.reference import command_paths

    site = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for path in command_paths():
        page = site / "reference" / "cli" / "-".join(path) / "index.html"
        assert page.exists(), path
    api = (site / "reference" / "api" / "restok" / "index.html").read_text()
    missing = [n for n in restok.__all__ if n != "__version__" and f'id="restok.{n}"' not in api]
    assert not missing, missing
    cli = (site / "reference" / "cli" / "train-tokenizer" / "index.html").read_text()
    assert "--init" in cli and "--startup-timeout" in cli  # the options are read from the parser


@pytest.mark.slow
def test_the_quick_start_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = json.loads((ROOT / "examples" / "quickstart.ipynb").read_text())
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), "outputs must be stripped"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__notebook__"}
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"quickstart.ipynb cell {i}", "exec"), namespace)


def _template_commands(text: str) -> list[list[str]]:
    """The ``restok`` arguments of every ``-m restok ...`` line of a launch script (continuations joined; quotes and
    the closing parenthesis of a bash array dropped; shell variables stay as words)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        if line.lstrip().startswith("#") or "-m restok " not in line:
            continue
        tail = line.split("-m restok ", 1)[1].split(" #", 1)[0]
        out.append(shlex.split(tail.replace("'", "").replace('"', "").rstrip(") ")))
    return out


@pytest.mark.parametrize("script", sorted((ROOT / "examples" / "slurm").glob("*.sbatch")), ids=lambda p: p.name)
def test_every_launch_template_command_parses(script: Path) -> None:
    found = _template_commands(script.read_text())
    assert found, f"{script.name} runs no restok command"
    problems = [f"restok {' '.join(a)}: {m}" for a in found if (m := parse_command(a))]
    assert not problems, problems
