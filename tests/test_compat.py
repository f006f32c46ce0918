"""Old paths go through one door: every public name, method and attribute restok had on 2026-12-02 still answers
(``api-2026-12-02.json``, taken from that day's code before and after its sub-packages), the old module paths with a
DeprecationWarning that names the new one, and the project's own code, tests and benchmarks use the new paths only."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import restok
from restok._compat import MOVED, new_path

from .helpers import ENV

ROOT = Path(__file__).resolve().parents[1]
API = json.loads((Path(__file__).parent / "api-2026-12-02.json").read_text())


def _resolve(path: str) -> object:
    """The object a dotted path names: a module, or an attribute of the longest importable module prefix."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(path)


def test_every_public_name_method_and_attribute_of_2026_12_02_still_answers() -> None:
    missing = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in API["names"]:
            if not hasattr(restok, name):
                missing.append(f"restok.{name}")
        for module, names in API["modules"].items():
            try:
                mod = _resolve(module)
            except (ImportError, AttributeError):
                missing.append(module)
                continue
            missing += [f"{module}.{n}" for n in names if not hasattr(mod, n)]
        for cls_path, attrs in API["classes"].items():
            try:
                cls = _resolve(cls_path)
            except (ImportError, AttributeError):
                missing.append(cls_path)
                continue
            missing += [f"{cls_path}.{a}" for a in attrs if not hasattr(cls, a)]
    assert missing == []


def test_encode_adaptive_is_a_method_again_with_a_warning(tiny_tok) -> None:
    """``tok.encode_adaptive(images, psnr=...)``, documented before the sub-packages, answers as the function does."""
    import torch

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.warns(DeprecationWarning, match=r"restok\.encode_adaptive\(tokenizer"):
        old = tiny_tok.encode_adaptive(x, psnr=8.0)
    new = restok.encode_adaptive(tiny_tok, x, psnr=8.0)
    assert torch.equal(old.ids, new.ids) and torch.equal(old.lengths, new.lengths)


_IMPORT_OLD_PATHS = """
import importlib, json, sys, warnings
import restok
from restok._compat import MOVED
seen = {}
for old in sorted(MOVED):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"restok.{old}")
    seen[old] = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert dir(module)
print(json.dumps(seen))
"""


def test_old_module_paths_answer_with_a_deprecation_warning_naming_the_new_one() -> None:
    """In a fresh interpreter (an import is warned about once, when it first happens)."""
    r = subprocess.run([sys.executable, "-c", _IMPORT_OLD_PATHS], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(seen) == sorted(MOVED)
    for old, messages in seen.items():
        assert any(f"restok.{old} is an old path" in m and new_path(old) in m for m in messages), (old, messages)


def test_the_project_itself_uses_the_new_paths() -> None:
    """No test, benchmark, script or module of the package imports an old path (the door is for users)."""
    old = "|".join(re.escape(k) for k in sorted(MOVED, key=len, reverse=True))
    pattern = re.compile(rf"(from|import)\s+restok\.({old})\b(?!\.)")
    offenders = []
    for folder in ("src", "tests", "benchmarks", "scripts"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            if f.name == "_compat.py" or f == Path(__file__).resolve():
                continue
            text = f.read_text()
            offenders += [f"{f.relative_to(ROOT)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert offenders == []
