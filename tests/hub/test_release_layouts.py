"""Every registered family's release layout read strictly (the classes "values are checked after every conversion"
and "errors say what to fix"): a generated grid over every config key the layout reads -- missing, of the wrong
type, NaN, 0, -1, 1e30 and a string -- and over every weight tensor -- zero-sized or of the wrong rank. Each case
either loads (a value that is valid) or is refused in one line that names the key or tensor and the file; nothing
is truncated (64.9 -> 64), read as true ("no"), or fails with Python's own words (KeyError, ZeroDivisionError)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import restok.hub.pretrained as pretrained
from restok.core.registry import model_classes
from restok.core.release import ReleaseConfig
from restok.hub import CheckpointError
from restok.hub.keys import check_state_dict
from restok.models.har import HARGenerator
from restok.models.restok import ResTok
from restok.models.restok.official import tokenizer_config_from_official
from tests.hub.test_checkpoint import _official_generator_args, _official_tokenizer_config

FAMILIES = Path(__file__).resolve().parent.parent / "fixtures" / "families"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "parity"))


class Accepted(Exception):  # noqa: N818 - raised where the loader would build the model: the config was read
    def __init__(self, config: Any) -> None:
        self.config = config


def _meta_shapes(cls: type, config: Any) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}


def _meta_model(cls: type, config: Any) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return dict(cls(config).state_dict())


def _har_args() -> dict[str, Any]:
    return _official_generator_args(HARGenerator.presets["har-tiny"])


def _har_training_config() -> dict[str, Any]:
    return {
        "model": {
            "generator": {
                "model_type": "GPT-B",
                "vocab_size": 64,
                "block_size": 16,
                "ar_token_num": 4,
                "spe_token_num": 15,
                "num_classes": 10,
                "cls_token_num": 1,
                "gpt_type": "c2i",
                "dropout_p": 0.1,
                "token_dropout_p": 0.1,
                "drop_path_rate": 0.0,
                "har": True,
            }
        }
    }


def _family_case(name: str) -> tuple[dict | None, dict[str, tuple[int, ...]]]:
    meta = json.loads((FAMILIES / f"{name}.json").read_text())
    shapes = {k: tuple(v) for k, v in meta["state_dict_shapes"].items()}
    if meta.get("release_config") is not None:
        return meta["release_config"], shapes
    args = dict(meta["model_args"])
    if meta["family"] == "llamagen-vq":
        args["image_size"] = meta["image_size"]
    else:  # a flat GPT dump says whose it is (unmarked, it is the official HAR layout's vanilla AR config)
        args["family"] = "llamagen-gpt"
    return args, shapes


def _restok_case() -> tuple[dict, dict[str, tuple[int, ...]]]:
    cfg = _official_tokenizer_config(ResTok.from_preset("restok-tiny"))
    return cfg, _meta_shapes(ResTok, tokenizer_config_from_official(cfg))


def _har_case(cfg: dict) -> tuple[dict, dict[str, tuple[int, ...]]]:
    from restok.models.har.official import generator_config_from_official

    return cfg, _meta_shapes(HARGenerator, generator_config_from_official(cfg))


# (family, layout) -> the base case: a release config and its weights' shapes; every registered layout has one
CASES: dict[str, tuple[tuple[str, str], Callable[[], tuple[dict | None, dict[str, tuple[int, ...]]]]]] = {
    "restok-official": (("restok", "official"), _restok_case),
    "har-official-model-args": (("har", "official"), lambda: _har_case(_har_args())),
    "har-official-training-config": (("har", "official"), lambda: _har_case(_har_training_config())),
    "titok-release": (("titok", "release"), lambda: _family_case("titok_two_stage")),
    "titok-release-single-stage": (("titok", "release"), lambda: _family_case("titok_single_stage")),
    "one-d-piece-release": (("one-d-piece", "release"), lambda: _family_case("one_d_piece")),
    "llamagen-vq-release": (("llamagen-vq", "release"), lambda: _family_case("llamagen_vq16")),
    "llamagen-gpt-release": (("llamagen-gpt", "release"), lambda: _family_case("llamagen_gpt_b")),
}


def test_every_registered_layout_has_a_case() -> None:
    registered = {(c.family, lay.name) for c in model_classes() for lay in c.layouts}
    assert registered == {key for key, _ in CASES.values()}


class Loader:
    """``from_pretrained`` on a folder of the case (config.json + weights), stopped once the config is read; the
    weights are handed over in memory (their shapes are what matters here)."""

    def __init__(self, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (family, _), make = CASES[case]
        self.cls = next(c for c in model_classes() if c.family == family)
        self.config, self.shapes = make()
        self.folder = tmp_path / case
        self.folder.mkdir()
        self.weights = self.folder / "model.safetensors"
        save_file({"x": torch.zeros(1)}, str(self.weights))  # a file for the resolver; read_state_dict is replaced
        self.sd: dict[str, torch.Tensor] = {}
        self._meta: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}
        monkeypatch.setattr(pretrained, "read_state_dict", lambda path: self.sd)

        def accept(cls: type, config: Any, *a: Any, **k: Any) -> int:
            raise Accepted(config)

        monkeypatch.setattr(pretrained.PretrainedModel, "check_fits", classmethod(accept))

    def load(self, config: dict | None, shapes: dict[str, tuple[int, ...]]) -> Any:
        """The config the loader read, or the CheckpointError it raised."""
        cfg_file = self.folder / "config.json"
        cfg_file.unlink(missing_ok=True)
        if config is not None:
            cfg_file.write_text(json.dumps(config))
        # meta tensors: shapes without memory (the loader stops before it would read a value)
        for k, s in shapes.items():
            if (k, s) not in self._meta:
                self._meta[k, s] = torch.empty(s, device="meta")
        self.sd = {k: self._meta[k, s] for k, s in shapes.items()}
        try:
            self.cls.from_pretrained(str(self.folder))
        except Accepted as a:
            return a.config
        except CheckpointError as e:
            return e
        raise AssertionError("the loader neither read a config nor refused")


def _read_keys(loader: Loader, monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, ...], type | str]:
    """The key paths the layout reads from the base config (spied on ReleaseConfig), with the kind of each."""
    seen: dict[str, type | str] = {}
    get, ints = ReleaseConfig.get, ReleaseConfig.ints

    def spy_get(self: ReleaseConfig, key: str, kind: type, *a: Any, **k: Any) -> Any:
        if key in self.data:
            seen[self.path + key] = kind
        return get(self, key, kind, *a, **k)

    def spy_ints(self: ReleaseConfig, key: str, *a: Any, **k: Any) -> Any:
        if key in self.data:
            seen[self.path + key] = "ints"
        return ints(self, key, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(ReleaseConfig, "get", spy_get)
        m.setattr(ReleaseConfig, "ints", spy_ints)
        base = loader.load(loader.config, loader.shapes)
    assert not isinstance(base, Exception), base
    return {tuple(k.split(".")): kind for k, kind in seen.items()}


def _mutated(config: dict, path: tuple[str, ...], value: Any) -> dict:
    out = json.loads(json.dumps(config))
    node = out
    for part in path[:-1]:
        node = node[part]
    if value is MISSING:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


MISSING = object()
VALUES = {"missing": MISSING, "wrong type": {"a": 1}, "nan": math.nan, "zero": 0, "minus one": -1, "1e30": 1e30}
VALUES["string"] = "no"


def _may_load(label: str, kind: type | str) -> bool:
    """Which mutations a valid release may carry: a key left out (defaults), 0 or -1 where the range allows, a huge
    float; a NaN, a string, a list where a scalar belongs, or a non-integral integer never."""
    if label == "missing":
        return True
    if label in ("zero", "minus one"):
        return kind in (int, float)
    return label == "1e30" and kind is float


def _assert_one_line(error: Exception, *words: str) -> None:
    text = str(error)
    assert "\n" not in text, text
    for w in words:
        assert w in text, (w, text)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_config_key_is_read_strictly(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loader = Loader(case, tmp_path, monkeypatch)
    if loader.config is None:
        pytest.fail(f"{case} has no config to mutate")
    keys = _read_keys(loader, monkeypatch)
    assert len(keys) >= 5, keys  # the layout reads its config through ReleaseConfig
    cfg_file = str(loader.folder / "config.json")
    for path, kind in keys.items():
        for label, value in VALUES.items():
            if kind is str and label == "string":
                continue  # a string where a string belongs: another name, checked by the layouts' own tests
            got = loader.load(_mutated(loader.config, path, value), loader.shapes)
            where = f"{'.'.join(path)} = {label}"
            if isinstance(got, Exception):
                _assert_one_line(got, cfg_file)
                assert path[-1] in str(got), (where, str(got))
            else:
                assert _may_load(label, kind), f"{where} was accepted: {got}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_weight_tensor_zero_sized_or_of_another_rank_is_named(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = Loader(case, tmp_path, monkeypatch)
    base = loader.load(loader.config, loader.shapes)
    assert not isinstance(base, Exception), base
    base_shapes = _meta_shapes(loader.cls, base)
    base_model = _meta_model(loader.cls, base)
    for name, shape in loader.shapes.items():
        if name not in base_shapes and name.startswith(loader.cls.ignored_prefixes):
            continue  # a release's tensor the model drops (LlamaGen's codebook_used): any shape is dropped alike
        variants = {"zero-sized": (0, *shape[1:]) if shape else (0,), "another rank": (1, *shape)}
        for bad in variants.values():
            got = loader.load(loader.config, {**loader.shapes, name: bad})
            if isinstance(got, Exception):
                _assert_one_line(got, name, str(loader.weights))
                continue
            # the config was read without this tensor's size: the weights then fail to fit the model, named
            own = base_model if got == base else _meta_model(loader.cls, got)
            with pytest.raises(CheckpointError) as e:
                check_state_dict(own, loader.sd, loader.cls.ignored_prefixes, str(loader.weights), "x")
            _assert_one_line(e.value, name, str(loader.weights))


@pytest.mark.parametrize(
    "case,path,value,expected",
    [
        ("titok-release", ("model", "vq_model", "use_l2_norm"), "no", "must be true or false, got 'no'"),
        ("titok-release", ("model", "vq_model", "is_legacy"), "false", "must be true or false, got 'false'"),
        ("restok-official", ("model", "vq_model", "use_l2_norm"), "no", "must be true or false"),
        ("titok-release", ("model", "vq_model", "num_latent_tokens"), 64.9, "must be an integer, got 64.9"),
        ("titok-release", ("dataset", "preprocessing", "crop_size"), 32.7, "must be an integer, got 32.7"),
        ("titok-release", ("model", "vq_model", "codebook_size"), 2**30, "codebook_size must be in [2, 16777216]"),
        ("har-official-model-args", ("block_size",), "1e30", "block_size must be an integer, got '1e30'"),
    ],
)
def test_the_trials_examples_are_refused_with_the_key(
    case: str, path: tuple[str, ...], value: Any, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = Loader(case, tmp_path, monkeypatch)
    got = loader.load(_mutated(loader.config, path, value), loader.shapes)
    assert isinstance(got, CheckpointError), got
    _assert_one_line(got, expected, str(loader.folder / "config.json"))


def test_a_codebook_finite_in_float64_but_not_in_float32_is_refused(tmp_path: Path, tiny_tok: ResTok) -> None:
    tiny_tok.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    sd = load_file(str(tmp_path / "model.safetensors"))
    sd["quantize.embedding.weight"] = sd["quantize.embedding.weight"].double() * 1e300
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="NaN or Inf as torch.float32, e.g. quantize.embedding.weight"):
        ResTok.from_pretrained(str(tmp_path))


def test_a_weight_beyond_float16_is_refused_after_the_cast(tmp_path: Path, tiny_tok: ResTok) -> None:
    tiny_tok.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    sd = load_file(str(tmp_path / "model.safetensors"))
    sd["quantize.embedding.weight"][0, 0] = 1e6  # finite in float32, Inf in float16
    save_file(sd, str(tmp_path / "model.safetensors"))
    assert ResTok.from_pretrained(str(tmp_path)) is not None
    with pytest.raises(CheckpointError, match="quantize.embedding.weight holds NaN or Inf"):
        ResTok.from_pretrained(str(tmp_path), torch_dtype="fp16")
