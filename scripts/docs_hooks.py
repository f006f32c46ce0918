"""MkDocs hooks of the documentation site: pages made from the code and the repository when the site is built.

* ``reference/cli/*.md``: the command-line reference, from the parser itself (``restok.cli.reference``).
* ``results/benchmarks.md`` and ``results/replication.md``: ``benchmarks/RESULTS.md`` and
  ``benchmarks/replication/RESULTS.md`` with their figures, so the measured figures live in one place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
RESULTS = {
    "results/benchmarks.md": ROOT / "benchmarks" / "RESULTS.md",
    "results/replication.md": ROOT / "benchmarks" / "replication" / "RESULTS.md",
}


def _results_page(source: Path, files: Files, config: Any) -> str:
    """A results file as a page: its figures copied beside it, links into the repository made absolute."""
    text = source.read_text()
    for figure in sorted(source.parent.glob("figures/*.png")):
        files.append(File.generated(config, f"results/figures/{figure.name}", abs_src_path=str(figure)))
    # repository paths (scripts, configs) are not pages of the site: show them as code, not as links
    return re.sub(r"\]\((?!https?://|figures/|#)([^)]+)\)", r"] (`\1`)", text)


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages."""
    from restok.cli.reference import cli_pages

    for rel, text in cli_pages().items():
        files.append(File.generated(config, f"reference/cli/{rel}", content=text))
    for rel, source in RESULTS.items():
        files.append(File.generated(config, rel, content=_results_page(source, files, config)))
    return files
