"""Numerical parity with the official ResTok code.

The fixtures in ``tests/fixtures`` were produced by running the official repository on CPU
(``tests/parity/make_official_fixtures.py``) with weights regenerated here from the same seed; each
test writes those weights in the *official* layout and loads them through ``from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from restok import HARGenerator, ResTok
from restok.core import hierarchy as Hy

from ..parity.fixture_io import load_fixture
from ..parity.seeded_weights import seeded_state_dict

PIXEL_ATOL = 1e-4


def _official_dir(tmp_path: Path, meta: dict, config: dict) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (seeded weights, official names) to a directory."""
    sd = seeded_state_dict(meta["state_dict_shapes"], meta["weight_seed"])
    save_file(sd, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.fixture(scope="module", params=["tok_a", "tok_b", "tok_c"])
def tok_case(request, tmp_path_factory):
    """(metadata, tensors, tokenizer loaded from the official layout) for one fixture case (loaded once per module:
    the tests only read it)."""
    meta, t = load_fixture(request.param)
    tok = ResTok.from_pretrained(str(_official_dir(tmp_path_factory.mktemp(request.param), meta, meta["config"])))
    return meta, t, tok.eval()


def test_tokenizer_tokens_identical(tok_case):
    meta, t, tok = tok_case
    ids = tok.encode(t["images"])
    assert torch.equal(ids, t["tokens"])


def test_tokenizer_latents_and_losses(tok_case):
    meta, t, tok = tok_case
    with torch.no_grad():
        enc, q = tok.encode_latents(t["images"])
    z_official = t["z"][:, :, 0].transpose(1, 2)  # (B, C, 1, L) -> (B, L, C)
    torch.testing.assert_close(enc.latents, z_official, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(q.codes, t["zq"][:, :, 0].transpose(1, 2), atol=1e-6, rtol=0)
    for ours, theirs in (
        ("loss", "quantizer_loss"),
        ("commitment_loss", "commitment_loss"),
        ("codebook_loss", "codebook_loss"),
    ):
        torch.testing.assert_close(getattr(q, ours), t[theirs], atol=1e-6, rtol=1e-5)


def test_tokenizer_decode_full_and_prefixes(tok_case):
    meta, t, tok = tok_case
    zq = t["zq"][:, :, 0].transpose(1, 2)  # straight-through codes, as the official decode(zq) used
    with torch.no_grad():
        torch.testing.assert_close(tok.decode_codes(zq), t["decoded_full"], atol=PIXEL_ATOL, rtol=0)
        for k in meta["decoded_prefix_k"]:
            torch.testing.assert_close(tok.decode_codes(zq, k), t[f"decoded_k{k}"], atol=PIXEL_ATOL, rtol=0)
        lengths = meta["decoded_list_lengths"]
        torch.testing.assert_close(tok.decode_codes(zq, lengths), t["decoded_list"], atol=PIXEL_ATOL, rtol=0)


def test_tokenizer_decode_ids_matches_official_decode_tokens(tok_case):
    meta, t, tok = tok_case
    out = tok.decode(t["tokens"])
    torch.testing.assert_close(out, t["decoded_tokens_full"].clamp(0, 1), atol=PIXEL_ATOL, rtol=0)
    # prefix decoding from ids: positions beyond k are masked, so it equals the official decode(zq, k)
    for k in meta["decoded_prefix_k"]:
        torch.testing.assert_close(tok.decode(t["tokens"][:, :k]), t[f"decoded_k{k}"].clamp(0, 1), atol=3e-4, rtol=0)


def test_tokenizer_hierarchy_matches_official(tok_case):
    meta, t, tok = tok_case
    L = tok.num_tokens
    assert list(Hy.latent_level_sizes(L)) == meta["nested_dropout_blocks"]
    assert list(tok.prefix_lengths) == meta["nested_dropout_list"]
    assert list(Hy.merge_layers(tok.config.depth, tok.config.hierarchy_stages)) == meta["merge_layers"]
    if tok.config.nested_dropout and "nested_dropout_probs" in meta:
        probs = Hy.nested_dropout_probs(L, tok.config.min_tokens, 0.2)
        assert probs == pytest.approx(meta["nested_dropout_probs"])
    assert sum(p.numel() for p in tok.parameters()) == meta["num_params"]


# ----------------------------------------------------------------------------------------------------
# Generator


@pytest.fixture(scope="module", params=["gen_a", "gen_b", "gen_vanilla"])
def gen_case(request, tmp_path_factory):
    """(metadata, tensors, generator loaded from the official layout), once per module."""
    meta, t = load_fixture(request.param)
    gen = HARGenerator.from_pretrained(
        str(_official_dir(tmp_path_factory.mktemp(request.param), meta, meta["model_args"]))
    )
    return meta, t, gen


def test_generator_teacher_forced_logits(gen_case):
    meta, t, gen = gen_case
    with torch.no_grad():
        logits = gen(t["tokens"], t["labels"])
    L = gen.num_tokens
    torch.testing.assert_close(logits, t["logits"][:, :L], atol=1e-4, rtol=0)


def test_generator_group_mask_matches_official(gen_case):
    meta, t, gen = gen_case
    if "group_mask_allowed" not in t:
        pytest.skip("vanilla fixture has no group mask")
    ours = Hy.har_attention_mask(gen.num_tokens, gen.config.ar_tokens)
    assert torch.equal(ours, t["group_mask_allowed"].bool())


_RUN_SCHEDULE = {"constant": "constant", "step": "step", "linear": "linear"}


@pytest.mark.parametrize(
    "run", ["gen_nocfg", "gen_constant", "gen_step", "gen_linear", "gen_stochastic", "gen_stochastic_topk"]
)
def test_generator_sampling_identical(gen_case, run):
    meta, t, gen = gen_case
    spec = meta["runs"][run]
    kw = spec["generate_kwargs"]
    assert kw["cfg_schedule_kwargs"]["num_steps"] == gen.num_steps == spec["model_forward_calls"]
    seed = spec["torch_manual_seed_before_generate"]
    out = gen.generate(
        t["gen_labels"],
        cfg_scale=kw["guidance_scale"],
        cfg_schedule=_RUN_SCHEDULE[kw["guidance_decay"]],
        cfg_start=kw["cfg_schedule_kwargs"].get("window_start", 0.0),
        temperature=kw["randomize_temperature"],
        top_k=kw["top_k"],
        top_p=kw["top_p"],
        generator=None if seed is None else torch.Generator().manual_seed(seed),
    )
    assert torch.equal(out, t[run])


@pytest.mark.slow
def test_official_layout_convert_keeps_outputs(tmp_path):
    from restok.models.auto import convert_checkpoint

    meta, t = load_fixture("tok_b")
    (tmp_path / "official").mkdir()
    src = _official_dir(tmp_path / "official", meta, meta["config"])
    kind, dropped = convert_checkpoint(str(src), tmp_path / "ours")
    assert kind == "tokenizer" and dropped == []
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["format"] == "restok"
    tok = ResTok.from_pretrained(str(tmp_path / "ours"))
    assert torch.equal(tok.encode(t["images"]), t["tokens"])

    gmeta, gt = load_fixture("gen_a")
    (tmp_path / "gofficial").mkdir()
    gsrc = _official_dir(tmp_path / "gofficial", gmeta, gmeta["model_args"])
    assert convert_checkpoint(str(gsrc), tmp_path / "gours")[0] == "generator"
    gen = HARGenerator.from_pretrained(str(tmp_path / "gours"))
    with torch.no_grad():
        torch.testing.assert_close(gen(gt["tokens"], gt["labels"]), gt["logits"], atol=1e-4, rtol=0)
