"""The house's order, enforced: every import (function-level and type-checking ones included) goes from a sub-package
to itself or to one below it in the declared order, no module imports itself back, no driver is longer than a screen,
and every sub-package says what it holds and what it may import."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import restok

SRC = Path(restok.__file__).resolve().parent
# bottom to top: a sub-package may import only itself and the ones before it
LAYERS = ("runtime", "core", "data", "sampling", "hub", "models", "eval", "pipelines", "train", "apps", "cli")
TOP = {"restok", "restok.__main__", "restok._compat", "restok._legacy"}  # the facade, the entry point, the old paths
MAX_LINES = 60


def module_name(path: Path) -> str:
    """``restok.eval.metrics`` for ``src/restok/eval/metrics.py`` (``restok.eval`` for its ``__init__.py``)."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of the source tree (not a name defined inside one)."""
    path = SRC.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(source: str, name: str, is_package: bool) -> set[str]:
    """The restok modules a module's source imports anywhere (``from .. import x`` resolves to the module ``x`` when
    there is one, else to the package it names)."""
    out: set[str] = set()
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "restok"}
        elif isinstance(node, ast.ImportFrom):
            parent = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(parent + (node.module.split(".") if node.module else []))
            if target.split(".")[0] != "restok":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if _is_module(sub) else target)
    return out


def layer(module: str) -> int | None:
    """The index of a module's sub-package in :data:`LAYERS` (None for the top-level modules)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes up the order, or into the top-level facade, as ``a -> b`` lines."""
    bad = []
    for a, targets in graph.items():
        if a in TOP:
            continue
        for b in targets:
            if b in TOP or (layer(b) is not None and layer(b) > layer(a)):  # type: ignore[operator]
                bad.append(f"{a} -> {b}")
    return sorted(bad)


def circles(graph: dict[str, set[str]]) -> list[str]:
    """Modules that import themselves back through others."""

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for m in graph.get(todo.pop(), ()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    return sorted(m for m in graph if m in reach(m))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = sorted(SRC.rglob("*.py"))
    return {
        module_name(f): imports_of(f.read_text(), module_name(f), f.name == "__init__.py") - {module_name(f)}
        for f in files
    }


def test_every_module_is_in_a_layer(graph) -> None:
    assert {m for m in graph if layer(m) is None} == TOP
    assert {m.split(".")[1] for m in graph if layer(m) is not None} == set(LAYERS)


def test_imports_only_point_down_and_nothing_imports_itself_back(graph) -> None:
    assert upward(graph) == []
    assert circles(graph) == []
    assert not any(
        m.startswith(("restok.models", "restok.eval")) for m in graph["restok.sampling.loop"]
    )  # the sampler knows no model
    assert not any(
        layer(m) == LAYERS.index("models") for m in graph["restok.hub.pretrained"]
    )  # loading never imports a family


def test_the_check_fails_on_an_upward_import() -> None:
    """A module of ``core`` importing the CLI, even inside a function, is caught; an import of the facade too."""
    source = "def f():\n    from ..cli import main\n    from .. import __version__\n"
    found = imports_of(source, "restok.core.fields", False)
    assert found == {"restok.cli", "restok"}
    assert upward({"restok.core.fields": found}) == ["restok.core.fields -> restok", "restok.core.fields -> restok.cli"]
    assert circles({"restok.a": {"restok.b"}, "restok.b": {"restok.a"}}) == ["restok.a", "restok.b"]


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body as the formatter wrote them, its signature and docstring not counted (ruff format
    decides wrapping; the rule is about how much a driver does, not how densely it is packed)."""
    body = fn.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    return 0 if not body else body[-1].end_lineno - body[0].lineno + 1  # type: ignore[operator]


def test_no_function_is_longer_than_a_screen() -> None:
    """Drivers are named steps: no function body over 60 lines, but the command line's option declarations."""
    long = []
    for f in sorted(SRC.rglob("*.py")):
        for fn in _functions(ast.parse(f.read_text())):
            n = body_lines(fn)
            if n > MAX_LINES and not fn.name.endswith("_arguments"):
                long.append(f"{f.relative_to(SRC)}:{fn.name} ({n} lines)")
    assert long == []


def test_the_screen_rule_counts_formatted_lines_not_the_signature() -> None:
    source = 'def f(\n    a,\n    b,\n):\n    """Doc\n    more."""\n    x = (\n        1\n    )\n    return x\n'
    (fn,) = _functions(ast.parse(source))
    assert body_lines(fn) == 4


def test_every_sub_package_says_what_it_holds() -> None:
    for name in LAYERS:
        doc = importlib.import_module(f"restok.{name}").__doc__ or ""
        assert len(doc.split()) >= 25, f"restok.{name} has no paragraph saying what it holds and what it may import"


def test_public_functions_have_type_hints_and_a_docstring() -> None:
    missing = []
    for f in sorted(SRC.rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ClassDef) and not node.name.startswith("_")) and node is not tree:
                continue
            for fn in node.body:
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name.startswith("_"):
                    continue
                args = [a for a in fn.args.args + fn.args.kwonlyargs if a.arg not in ("self", "cls")]
                if ast.get_docstring(fn) is None or fn.returns is None or any(a.annotation is None for a in args):
                    missing.append(f"{f.relative_to(SRC)}:{fn.name}")
    assert missing == []
