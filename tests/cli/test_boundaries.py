"""Generated boundary tests: every numeric option of every command, and every numeric field of every config, tried
with 0, a negative, NaN, +-inf, a huge value and a non-number. Each value is either inside the range the option or
field declares (the documented result: accepted) or refused with one line naming it. Nothing here lists the options
or fields by hand: a new one is covered the day it is added, and one declared without a range fails the test."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from restok.cli import build_parser
from restok.core.fields import field_range, numeric_fields
from restok.models.har.config import HARConfig
from restok.models.layers.pixel_cnn import PixelCNNConfig
from restok.models.restok.config import ResTokConfig
from restok.sampling import SamplingConfig
from restok.train.config import OptimConfig, TrainConfig, load_train_config
from restok.train.losses import TokenizerLossConfig

from ..helpers import run_cli

PROBES = ("0", "-1", "nan", "inf", "-inf", "1" + "0" * 30, "1e300", "abc")


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command's (words, parser), walking the subcommand tree."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        seen: set[int] = set()
        for name, p in action.choices.items():  # an alias maps to a parser already walked
            if id(p) not in seen:
                seen.add(id(p))
                yield from _commands(p, (*path, name))


def _numeric(action: argparse.Action) -> bool:
    """Whether an option takes numbers (a ranged type, or a bare int/float, which the walk refuses)."""
    return getattr(action.type, "range", None) is not None or action.type in (int, float)


def _valid(action: argparse.Action) -> list[str]:
    """Arguments that satisfy a required option or positional."""
    if action.choices:
        value = str(next(iter(action.choices)))
    elif getattr(action.type, "range", None) is not None:
        r = action.type.range
        value = str(
            int(r.ge if r.ge is not None else r.gt + 1)
            if action.type.kind is int
            else (r.ge if r.ge is not None else r.gt + 0.5)
        )
    else:
        value = "x.png"
    return [value] * (1 if action.nargs in (None, "?", "+", 1) else 2)


def _required(parser: argparse.ArgumentParser, skip: argparse.Action) -> list[str]:
    """A command line holding every required argument of ``parser`` but ``skip``."""
    argv: list[str] = []
    for a in parser._actions:
        if a is skip or isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if not a.option_strings:
            argv += _valid(a)
        elif a.required:
            argv += [a.option_strings[0], *_valid(a)]
    return argv


def _accepted(action: argparse.Action, text: str) -> bool:
    """Whether ``text`` lies in the option's declared range (what a documented, correct run may get)."""
    try:
        value = action.type.kind(text)
    except (ValueError, OverflowError):
        return False
    return value in action.type.range


NUMERIC_OPTIONS = [
    (path, p, a) for path, p in _commands(build_parser()) for a in p._actions if a.option_strings and _numeric(a)
]


def test_the_walk_finds_the_options_it_should() -> None:
    names = {(" ".join(path), a.option_strings[0]) for path, _, a in NUMERIC_OPTIONS}
    for known in (
        ("generate", "--seed"),
        ("generate", "--cfg-scale"),
        ("tokenize", "--target-psnr"),
        ("eval search", "--max-points"),
        ("extract-codes", "--shard-size"),
        ("demo", "--num-eval"),
        ("vary", "--num"),
    ):
        assert known in names, known
    assert len(NUMERIC_OPTIONS) > 60


@pytest.mark.parametrize(
    "path, parser, action", NUMERIC_OPTIONS, ids=[f"{' '.join(p)} {a.option_strings[0]}" for p, _, a in NUMERIC_OPTIONS]
)
def test_every_numeric_option_refuses_what_its_range_does_not_hold(path, parser, action) -> None:
    assert action.type not in (int, float), f"{' '.join(path)} {action.option_strings[0]} has no declared range"
    base = [*path, *_required(parser, action)]
    for text in PROBES:
        argv = [*base, action.option_strings[0], text]
        if _accepted(action, text):
            parser_ok = build_parser()
            parser_ok.parse_args(argv)  # accepted, as the range documents
            continue
        r = run_cli(*argv)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: argument "), (argv, r.stderr)
        assert any(s in lines[0] for s in action.option_strings), (argv, lines[0])


# ------------------------------------------------------------------------------------------- config fields
CONFIGS = (PixelCNNConfig, ResTokConfig, HARConfig, SamplingConfig, TrainConfig, OptimConfig, TokenizerLossConfig)
PYTHON_PROBES: tuple[Any, ...] = (0, -1, math.nan, math.inf, -math.inf, 10**30, 1e300, "abc")


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` from ``"a.b"``."""
    head, _, rest = dotted.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _shaped(t: Any, value: Any) -> Any:
    """``value`` as the field's shape wants it: a list for a tuple field (two items for a pair)."""
    text = str(t)
    if "tuple" in text:
        return [value, value] if "..." not in text else [value]
    return value


def _in_range(f: Any, t: Any, value: Any) -> bool:
    """Whether ``value`` is a number of the field's kind inside its declared range."""
    if isinstance(value, str) or (isinstance(value, float) and "float" not in str(t)):
        return False
    return value in field_range(f)


FIELDS = [(cls, name, f, t) for cls in CONFIGS for name, (f, t) in numeric_fields(cls).items()]


@pytest.mark.parametrize("cls, name, f, t", FIELDS, ids=[f"{c.__name__}.{n}" for c, n, _, _ in FIELDS])
def test_every_numeric_config_field_declares_a_range_and_keeps_to_it(cls, name, f, t) -> None:
    assert field_range(f) is not None, (
        f"{cls.__name__}.{name} holds numbers but declares no range (use core.fields.setting)"
    )
    leaf = name.rsplit(".", 1)[-1]
    for value in PYTHON_PROBES:
        data = _nest(name, _shaped(t, value))
        if _in_range(f, t, value):
            try:
                cls.from_dict(data)
            except ValueError:
                pass  # in range, but another field's rule may refuse the combination (each names its own fields)
            continue
        with pytest.raises(ValueError, match=leaf):
            cls.from_dict(data)


def _yaml_scalar(value: Any) -> str:
    """The YAML spelling of a probe (``.nan``, ``.inf``, ...)."""
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return yaml.safe_dump(value).split("\n")[0]


TRAIN_FIELDS = [
    (kind, recipe, prefix, name, f, t)
    for kind, recipe, model_cls in (("tokenizer", "restok-tiny", ResTokConfig), ("generator", "har-tiny", HARConfig))
    for prefix, fields in (("", numeric_fields(TrainConfig)), ("model_overrides.", numeric_fields(model_cls)))
    for name, (f, t) in fields.items()
]


@pytest.mark.parametrize(
    "kind, recipe, prefix, name, f, t", TRAIN_FIELDS, ids=[f"{k}:{p}{n}" for k, _, p, n, _, _ in TRAIN_FIELDS]
)
def test_training_settings_from_key_value_overrides_and_yaml_files(tmp_path, kind, recipe, prefix, name, f, t) -> None:
    leaf = name.rsplit(".", 1)[-1]
    for value in PYTHON_PROBES:
        shaped = _shaped(t, value)
        text = f"[{', '.join(_yaml_scalar(v) for v in shaped)}]" if isinstance(shaped, list) else _yaml_scalar(shaped)
        override = [f"{prefix}{name}={text}"]
        yaml_file = tmp_path / "run.yaml"
        yaml_file.write_text(yaml.safe_dump({"base": recipe, **_nest(prefix + name, shaped)}))
        for how in (
            lambda o=override: load_train_config(recipe, kind, o),
            lambda y=yaml_file: load_train_config(str(y), kind),
        ):
            if _in_range(f, t, value):
                try:
                    how()
                except ValueError:
                    pass
                continue
            with pytest.raises(ValueError, match=leaf):
                how()


# ------------------------------------------------------------------------------------------- number lists in strings
@pytest.mark.parametrize("command, option", [("generate", "--classes"), ("reconstruct", "--tokens")])
def test_number_lists_given_as_text_are_refused_naming_the_option(tmp_path, command, option) -> None:
    """``--classes`` and ``--tokens`` are parsed by their own grammars; the same probes give one line naming them."""
    base = {
        "generate": [
            "generate",
            "--generator",
            "har-tiny-mnist",
            "--tokenizer",
            "restok-tiny-mnist",
            "--out",
            str(tmp_path / "g"),
        ],
        "reconstruct": [
            "reconstruct",
            str(tmp_path / "none.png"),
            "--tokenizer",
            "restok-tiny-mnist",
            "--out",
            str(tmp_path / "r"),
        ],
    }
    for text in ("-1", "nan", "inf", "1" + "0" * 30, "abc", "4,,8", ""):
        r = run_cli(*base[command], option, text)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and lines[-1].startswith(f"error: {option}"), (text, r.stderr)
