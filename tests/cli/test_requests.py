"""One command shape: every command fills in a keyword-only request and makes one call; a message below the command
line names the request's field, and the command line spells it as its flag through one table built from its parser
(so a renamed flag changes one place)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

import restok
from restok.cli import build_parser
from restok.cli.base import FIELD_FLAGS, flag_spelling
from restok.runtime.requests import RequestError, field, spell

from ..helpers import run_cli

SRC = Path(restok.__file__).resolve().parent
REQUESTS = [
    "restok.pipelines.tokens:ReconstructRequest",
    "restok.pipelines.tokens:TokenizeRequest",
    "restok.pipelines.tokens:DetokenizeRequest",
    "restok.pipelines.samples:SampleRequest",
    "restok.pipelines.samples:VariationRequest",
    "restok.pipelines.figures:FigureRequest",
    "restok.pipelines.figures:CurvesRequest",
    "restok.eval.jobs:ReconstructionRequest",
    "restok.eval.jobs:GenerationRequest",
    "restok.eval.jobs:SearchRequest",
    "restok.eval.jobs:ReferenceRequest",
    "restok.eval.jobs:CompareRequest",
    "restok.eval.jobs:CheckRequest",
    "restok.eval.context:EvalOptions",
    "restok.train.jobs:TrainRequest",
    "restok.train.jobs:ExtractCodesRequest",
    "restok.train.jobs:CheckCodesRequest",
    "restok.train.export:ExportRequest",
    "restok.models.auto:ConvertRequest",
    "restok.data.prepare:PrepareRequest",
    "restok.data.prepare:CheckShardsRequest",
    "restok.apps.demo:DemoRequest",
    "restok.apps.web:AppRequest",
]


def _cls(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", REQUESTS)
def test_requests_are_keyword_only_frozen_dataclasses(path: str) -> None:
    cls = _cls(path)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert all(f.kw_only for f in dataclasses.fields(cls))
    with pytest.raises(TypeError):
        cls("a", "b")  # positional arguments are refused


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "restok") -> dict[str, argparse.ArgumentParser]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[f"{prefix} {name}"] = sub
                out.update(_subparsers(sub, f"{prefix} {name}"))
    return out


def test_every_field_a_message_names_is_an_option_of_some_command() -> None:
    """A library message that names a field never reaches a CLI user as the Python spelling."""
    dests = set(FIELD_FLAGS)
    for sub in _subparsers(build_parser()).values():
        dests |= {a.dest for a in sub._actions}
    named = set()
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("field", "field_name"):
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    named.add(node.args[0].value)
    assert named, "no message names a field"
    assert sorted(named - dests) == []


def test_a_field_is_spelled_by_the_parser_that_has_it() -> None:
    """The one table: an option's first long spelling, a positional argument's name; renaming the option in the
    parser renames it in every message, with no other change."""
    p = argparse.ArgumentParser()
    p.add_argument("images", nargs="+")
    p.add_argument("--per-class", "--samples-per-class", dest="per_class")
    e = RequestError(f"{field('per_class')} must be >= 1 (of {field('images')}, not {field('unknown')})")
    assert str(e) == "per_class must be >= 1 (of images, not unknown)"
    assert e.spelled(flag_spelling(p)) == "--per-class must be >= 1 (of IMAGES, not unknown)"
    renamed = argparse.ArgumentParser()
    renamed.add_argument("--n-per-class", dest="per_class")
    assert e.spelled(flag_spelling(renamed)).startswith("--n-per-class must be")
    assert spell("no field here") == "no field here"


def test_library_errors_name_fields_and_the_command_line_names_flags(tmp_path) -> None:
    from restok.pipelines.samples import SampleRequest, write_samples

    req = SampleRequest(
        tokenizer="restok-tiny-mnist", generator="har-tiny-mnist", classes=("1",), out=tmp_path, per_class=0
    )
    with pytest.raises(RequestError, match=r"^per_class must be >= 1$"):
        write_samples(req)
    common = ["generate", "--tokenizer", "restok-tiny-mnist", "--generator", "har-tiny-mnist", "--out", str(tmp_path)]
    r = run_cli(*common, "--classes", "1", "--num-tokens", "5")
    assert r.returncode == 2 and r.stderr.strip().endswith("choose one of [4, 8, 16, 32]")
    assert "error: --num-tokens 5 is not a prefix length" in r.stderr and "num_tokens" not in r.stderr


def test_commands_hold_no_work() -> None:
    """A command module parses, builds its request, calls the library once and prints: no model loading, image
    reading or evaluation of its own."""
    forbidden = re.compile(r"\b(load_tokenizer|load_generator|load_pair|load_image|open_image_source|launched)\(")
    for f in sorted((SRC / "cli").glob("*.py")):
        assert not forbidden.search(f.read_text()), f.name


@pytest.mark.parametrize(
    "argv",
    [
        ["experiment", "grid.yaml", "--out", "o"],
        ["eval", "reconstruction", "--tokenizer", "t", "--data", "d", "--out", "o.json"],
        ["data", "prepare", "d", "--out", "o"],
        ["train", "tokenizer", "--config", "restok-tiny", "--data", "d", "--out", "o"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_no_progress_reaches_every_request_through_one_place(argv: list[str]) -> None:
    """``--no-progress`` is turned into the request's ``progress`` by ``request`` itself, for every command with both
    (restok experiment had taken the flag and shown its bars anyway)."""
    from restok.cli.base import request
    from restok.data.prepare import PrepareRequest
    from restok.eval.context import EvalOptions
    from restok.train.experiment import ExperimentRequest
    from restok.train.jobs import TrainRequest

    parser = build_parser()
    build = {
        "experiment": lambda a: request(ExperimentRequest, a),
        "eval": lambda a: request(EvalOptions, a),
        "data": lambda a: request(PrepareRequest, a),
        "train": lambda a: request(TrainRequest, a, kind="tokenizer", data="d"),
    }[argv[0]]
    for flag, expected in (([], True), (["--no-progress"], False)):
        assert build(parser.parse_args([*argv, *flag])).progress is expected
