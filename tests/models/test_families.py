"""The compared families (TiTok, One-D-Piece, LlamaGen) against fixtures made by their own repositories' code
(``tests/parity/make_family_fixtures.py``): same weight names and shapes, identical ids, pixels within float
tolerance; and each loads from its release layouts (config.json + weights, bare weights) through the registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from restok.core.registry import model_class
from restok.models import load_tokenizer

FAMILIES = Path(__file__).resolve().parent.parent / "fixtures" / "families"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "parity"))
from seeded_weights import seeded_state_dict  # noqa: E402

TITOK_CASES = ["titok_two_stage", "titok_single_stage", "one_d_piece"]


def fixture(case: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The case's metadata and tensors."""
    return json.loads((FAMILIES / f"{case}.json").read_text()), load_file(str(FAMILIES / f"{case}.safetensors"))


def release_folder(tmp_path: Path, meta: dict, bare: bool = False) -> Path:
    """The case's seeded weights in the release layout: ``config.json`` + ``model.safetensors`` (the Hub repos'), or
    a bare weights file (the ``tokenizer_titok_*.bin`` downloads) written with ``torch.save``."""
    sd = seeded_state_dict(meta["state_dict_shapes"], meta["weight_seed"])
    if bare:
        path = tmp_path / "tokenizer.bin"
        torch.save(sd, path)
        return path
    d = tmp_path / "release"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(meta["release_config"]))
    save_file(sd, str(d / "model.safetensors"))
    return d


@pytest.mark.parametrize("case", TITOK_CASES)
def test_titok_families_match_their_repositories(case: str, tmp_path: Path) -> None:
    meta, t = fixture(case)
    tok = load_tokenizer(release_folder(tmp_path, meta))
    assert type(tok) is model_class(meta["family"])
    assert {k: list(v.shape) for k, v in tok.state_dict().items()} == meta["state_dict_shapes"]
    ids = tok.encode(t["images"])
    assert torch.equal(ids, t["ids"])
    torch.testing.assert_close(tok.decode(t["ids"]), t["decoded"].clamp(0, 1), atol=2e-5, rtol=0)
    for k in meta["lengths"]:  # One-D-Piece: every prefix decodes, as the repository's decode_tokens(length=k)
        torch.testing.assert_close(tok.decode(t["ids"][:, :k]), t[f"decoded_k{k}"].clamp(0, 1), atol=2e-5, rtol=0)


def test_bare_titok_weights_are_read_off_their_shapes(tmp_path: Path) -> None:
    meta, t = fixture("titok_two_stage")
    tok = load_tokenizer(release_folder(tmp_path, meta, bare=True))
    assert type(tok).family == "titok" and tok.config.use_l2_norm and tok.config.two_stage
    assert tok.num_tokens == 8 and tok.codebook_size == 64 and tok.config.image_size == 32
    assert torch.equal(tok.encode(t["images"]), t["ids"])


def test_what_each_family_says_about_its_prefixes() -> None:
    titok = model_class("titok").from_preset("titok-tiny")
    odp = model_class("one-d-piece").from_preset("one-d-piece-tiny")
    assert not titok.nested and titok.prefix_lengths == (titok.num_tokens,)
    assert odp.nested and odp.prefix_lengths == (1, 2, 4, 8, 16) and odp.decodable(5)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="8"):
        titok.decode(titok.encode(images)[:, :4])
    assert odp.decode(odp.encode(images)[:, :5]).shape == (2, 3, 32, 32)


def test_vae_releases_are_refused_by_name(tmp_path: Path) -> None:
    meta, _ = fixture("titok_single_stage")
    d = release_folder(tmp_path, meta)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["vq_model"]["quantize_mode"] = "vae"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Exception, match="continuous latents"):
        load_tokenizer(d)


@pytest.mark.parametrize("case", ["llamagen_vq16", "llamagen_vq8"])
def test_llamagen_vq_matches_its_repository(case: str, tmp_path: Path) -> None:
    meta, t = fixture(case)
    sd = seeded_state_dict(meta["state_dict_shapes"], meta["weight_seed"])
    path = tmp_path / "vq_ds16_c2i.pt"
    torch.save({"model": sd, "steps": torch.tensor(0)}, path)  # the release layout: weights under "model"
    tok = load_tokenizer(path, config={"image_size": meta["image_size"]})  # the weights do not fix the image size
    assert type(tok).family == "llamagen-vq" and not tok.nested
    assert tok.prefix_lengths == (tok.num_tokens,) == (t["ids"].shape[1],)
    assert "quantize.codebook_used" in tok.provenance.dropped_keys
    assert torch.equal(tok.encode(t["images"]), t["ids"])
    expected = ((t["decoded"] + 1) / 2).clamp(0, 1)  # LlamaGen's [-1, 1] output, as [0, 1] pixels
    torch.testing.assert_close(tok.decode(t["ids"]), expected, atol=2e-5, rtol=0)


def load_gpt(meta: dict, tmp_path: Path) -> torch.nn.Module:
    """The case's seeded GPT from a release-layout file; the repository's ``block_size`` and ``n_head`` given (the
    weights
    fix neither; for the release widths the heads are known)."""
    from restok.models import load_generator

    sd = seeded_state_dict(meta["state_dict_shapes"], meta["weight_seed"])
    path = tmp_path / "c2i_T.pt"
    torch.save({"model": sd}, path)
    return load_generator(path, config={k: meta["model_args"][k] for k in ("block_size", "n_head")})


def test_llamagen_release_file_names_give_the_grid(tmp_path: Path) -> None:
    from restok.models import load_generator
    from restok.models.llamagen_gpt import LlamaGenGPT

    gen = LlamaGenGPT.from_preset("llamagen-gpt-tiny")
    for name, grid in (("c2i_T_256.pt", 16), ("c2i_T_384.pt", 24)):
        torch.save({"model": gen.state_dict()}, tmp_path / name)
        loaded = load_generator(tmp_path / name)
        assert loaded.num_tokens == grid * grid and loaded.generation_config.cfg_scale == 2.0


@pytest.mark.parametrize("case", ["llamagen_gpt_a", "llamagen_gpt_b"])
def test_llamagen_gpt_logits_and_greedy_samples_match_its_repository(case: str, tmp_path: Path) -> None:
    meta, t = fixture(case)
    gen = load_gpt(meta, tmp_path)
    assert type(gen).family == "llamagen-gpt" and gen.num_steps == gen.num_tokens == meta["model_args"]["block_size"]
    assert {k: list(v.shape) for k, v in gen.state_dict().items()} == meta["state_dict_shapes"]
    torch.testing.assert_close(gen(t["tokens"], t["labels"]), t["logits"], atol=1e-4, rtol=0)
    for scale in meta["greedy_cfg"]:  # restok's sampler (KV cache, guidance) gives the repository's greedy tokens
        for use_cache in (True, False):
            out = gen.generate(t["labels"], cfg_scale=scale, top_k=1, use_cache=use_cache)
            assert torch.equal(out, t[f"greedy_cfg{scale:g}"]), (scale, use_cache)


@pytest.mark.slow
def test_bare_one_d_piece_weights_convert_with_their_release_config(tmp_path: Path) -> None:
    import yaml

    from tests.helpers import run_cli

    meta, t = fixture("one_d_piece")
    weights = release_folder(tmp_path, meta, bare=True)
    cfg = tmp_path / "one-d-piece_s256.yaml"  # the repository's configs/*.yaml layout
    cfg.write_text(yaml.safe_dump(meta["release_config"]))
    r = run_cli("convert", weights, tmp_path / "converted", "--config", cfg)
    assert r.returncode == 0, r.stderr
    tok = load_tokenizer(tmp_path / "converted")
    assert type(tok).family == "one-d-piece"
    torch.testing.assert_close(tok.decode(t["ids"][:, :5]), t["decoded_k5"].clamp(0, 1), atol=2e-5, rtol=0)


def test_a_flat_gpt_config_says_which_family_it_is() -> None:
    from restok.core.registry import identify_checkpoint
    from restok.models.llamagen_gpt import LlamaGenGPT

    keys = set(LlamaGenGPT.from_preset("llamagen-gpt-tiny").state_dict())
    args = {
        "dim": 64,
        "n_layer": 2,
        "n_head": 4,
        "vocab_size": 64,
        "block_size": 64,
        "num_classes": 10,
        "model_type": "c2i",
    }
    assert identify_checkpoint({**args, "family": "llamagen-gpt"}, keys)[0] is LlamaGenGPT
    assert identify_checkpoint(args, keys)[0].family == "har"  # unmarked: ResTok's vanilla AR layout (1-D positions)
    assert identify_checkpoint(None, keys)[0] is LlamaGenGPT  # bare weights: LlamaGen's release


def test_a_family_must_supply_its_computations_and_a_layout_one_reader() -> None:
    from restok.core.registry import Layout
    from restok.models import Tokenizer

    class Half(Tokenizer):  # decode_ids missing
        def encode_ids(self, images: torch.Tensor) -> torch.Tensor:
            return images

    with pytest.raises(TypeError, match="decode_ids"):
        Half()
    with pytest.raises(ValueError, match="exactly one"):
        Layout("x", lambda cfg, keys: False)
    with pytest.raises(ValueError, match="exactly one"):
        Layout("x", lambda cfg, keys: False, read_config=dict, from_weights=lambda raw, shapes, where: None)
