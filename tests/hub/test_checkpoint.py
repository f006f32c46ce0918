"""Checkpoints: our format round trip, the official layouts, key errors, and refusing unsafe pickles."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from restok import RELEASED_RECIPE, HARGenerator, ResTok, SamplingConfig
from restok.core.release import ReleaseError
from restok.hub import CheckpointError, read_state_dict
from restok.models.restok.official import tokenizer_config_from_official


def _official_tokenizer_config(tok: ResTok) -> dict:
    """The official nested config.json describing a restok-tiny-like model."""
    c = tok.config
    return {
        "experiment": {"tokenizer_checkpoint": ""},
        "model": {
            "vq_model": {
                "codebook_size": c.codebook_size,
                "token_size": c.token_size,
                "use_l2_norm": True,
                "commitment_cost": 0.25,
                "entropy_loss_ratio": 0.0,
                "vit_enc_model_size": "small",
                "vit_dec_model_size": "small",
                "vit_enc_patch_size": 4,
                "vit_dec_patch_size": 4,
                "rope_base_len": 10000,
                "num_latent_tokens": c.num_tokens,
                "num_min_tokens": c.min_tokens,
                "test_num_latent_tokens": c.num_tokens,
                "merge_tokens": True,
                "hierarchy_stages": c.hierarchy_stages,
                "reduction_ratio": 0.5,
                "residual_image_tokens": True,
                "residual_latent_tokens": True,
                "learnable_latent_tokens": False,
                "learnable_dec_image_tokens": True,
                "multi_quant": True,
                "vae_encoder": True,
                "drop_latent_tokens": True,
                "drop_prob": 0.2,
                "latent_hierarchy": True,
                "use_vf": "dinov3",
                "encoder_feature_supervision": True,
                "decoder_feature_supervision": True,
                "pixel_cnn": {"hidden_channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "z_channels": 64},
            }
        },
        "dataset": {"preprocessing": {"crop_size": c.image_size}},
    }


@pytest.fixture(scope="module")
def small_official_tok() -> ResTok:
    """A tokenizer with the official 'small' ViT at 32 px (so an official config can describe it)."""
    torch.manual_seed(0)
    cfg = tokenizer_config_from_official(_official_tokenizer_config(ResTok.from_preset("restok-tiny")))
    return ResTok(cfg).eval()


def test_save_load_round_trip_identical(tmp_path, tiny_tok, tiny_gen):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tiny_tok.save_pretrained(tmp_path / "tok")
    tok2 = ResTok.from_pretrained(str(tmp_path / "tok"))
    assert tok2.config == tiny_tok.config
    ids = tiny_tok.encode(x)
    assert torch.equal(tok2.encode(x), ids)
    assert torch.equal(tok2.decode(ids[:, :8]), tiny_tok.decode(ids[:, :8]))
    meta = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert meta["format"] == "restok" and meta["format_version"] == 1 and meta["kind"] == "tokenizer"

    tiny_gen.save_pretrained(tmp_path / "gen")
    gen2 = HARGenerator.from_pretrained(str(tmp_path / "gen"))
    a = tiny_gen.generate([1, 2], top_k=5, generator=torch.Generator().manual_seed(3))
    b = gen2.generate([1, 2], top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_official_tokenizer_layout_with_training_keys(tmp_path, small_official_tok):
    tok = small_official_tok
    sd = {f"_orig_mod.{k}": v for k, v in tok.state_dict().items()}  # torch.compile prefixes
    sd["foundation_model.model.cls_token"] = torch.zeros(1, 1, 16)  # training-only extras
    sd["vf_proj.weight"] = torch.zeros(16, 512, 1, 1)
    sd["decoder.feat_mask_token"] = torch.zeros(1, 1, 512)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(_official_tokenizer_config(tok)))
    loaded = ResTok.from_pretrained(str(tmp_path))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.encode(x), tok.encode(x))
    assert loaded.config.nested_dropout and loaded.config.drop_prob == 0.2


def _official_generator_args(c: Any) -> dict[str, Any]:
    """The official ``ModelArgs`` of a HAR config (the flat generator layout), as its training run writes them."""
    return {
        "dim": c.dim,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_kv_head": None,
        "multiple_of": c.multiple_of,
        "ffn_dim_multiplier": None,
        "rope_base": 10000,
        "norm_eps": 1e-5,
        "initializer_range": 0.02,
        "token_dropout_p": 0.1,
        "attn_dropout_p": 0.0,
        "resid_dropout_p": 0.1,
        "ffn_dropout_p": 0.1,
        "drop_path_rate": 0.0,
        "num_classes": c.num_classes,
        "class_dropout_prob": 0.1,
        "model_type": "c2i",
        "vocab_size": c.vocab_size,
        "cls_token_num": 1,
        "block_size": c.num_tokens,
        "ar_token_num": c.ar_tokens,
        "spe_token_num": c.num_tokens - 1,
    }


def test_official_generator_layout(tmp_path, tiny_gen):
    c = tiny_gen.config
    # with the keys the official ModelArgs carry and the reader ignores
    args = {**_official_generator_args(c), "caption_dim": 2048, "max_batch_size": 32, "max_seq_len": 2048}
    save_file(tiny_gen.state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(args))
    gen = HARGenerator.from_pretrained(str(tmp_path))
    assert gen.config.replace(num_special_tokens=None) == c and gen.config.special_rows == c.special_rows
    # a single weights file with its config beside it works too
    gen_file = HARGenerator.from_pretrained(str(tmp_path / "model.safetensors"))
    greedy = SamplingConfig(top_k=1)
    assert torch.equal(gen_file.generate([4], greedy), tiny_gen.generate([4], greedy))
    # official weights sample with the released recipe unless told otherwise
    assert gen.generation_config == RELEASED_RECIPE and tiny_gen.generation_config == SamplingConfig()


def test_mismatched_checkpoint_names_keys(tmp_path, tiny_tok):
    sd = tiny_tok.state_dict()
    sd.pop("encoder.ln_post.weight")
    sd["encoder.extra_head.weight"] = torch.zeros(3)
    sd["quantize.embedding.weight"] = torch.zeros(10, 8)
    tiny_tok.save_pretrained(tmp_path)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        ResTok.from_pretrained(str(tmp_path))
    msg = str(e.value)
    assert "missing keys: encoder.ln_post.weight" in msg
    assert "unexpected keys: encoder.extra_head.weight" in msg
    assert "quantize.embedding.weight: checkpoint (10, 8) vs model (1024, 8)" in msg


def test_wrong_kind_is_named(tmp_path, tiny_gen):
    tiny_gen.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="generator checkpoint, not a tokenizer"):
        ResTok.from_pretrained(str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker  # type: ignore[attr-defined]
    path = tmp_path / "pytorch_model.bin"
    with open(path, "wb") as f:
        pickle.dump({"weight": evil}, f)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(path)
    assert not marker.exists()


def test_missing_path_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="does not exist"):
        ResTok.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        ResTok.from_pretrained(str(tmp_path))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        ResTok.from_pretrained("someone/not-cached-model")


def test_unsupported_official_options_are_refused(small_official_tok):
    cfg = _official_tokenizer_config(small_official_tok)
    cfg["model"]["vq_model"]["learnable_latent_tokens"] = True
    with pytest.raises(ReleaseError, match="learnable_latent_tokens"):
        tokenizer_config_from_official(cfg)


def test_push_to_hub_uploads_our_format(monkeypatch, tiny_tok):
    import huggingface_hub

    for var in ("HF_HUB_OFFLINE", "RESTOK_OFFLINE"):  # the tests run offline; the fake Hub below is all they reach
        monkeypatch.delenv(var, raising=False)
    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, private=False, exist_ok=False):
            uploaded["repo"] = (repo_id, private)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, commit_message):
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["config"] = json.loads((Path(folder_path) / "config.json").read_text())
            uploaded["card"] = (Path(folder_path) / "README.md").read_text()
            uploaded["message"] = commit_message

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = tiny_tok.push_to_hub("me/restok-tiny", private=True, commit_message="first")
    assert (
        url.endswith("me/restok-tiny")
        and uploaded["repo"] == ("me/restok-tiny", True)
        and uploaded["message"] == "first"
    )
    assert (
        uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
        and uploaded["config"]["kind"] == "tokenizer"
    )
    card = uploaded["card"]
    assert (
        card.startswith("---\nlibrary_name: restok") and "- image-tokenizer" in card and '"codebook_size": 1024' in card
    )
    # the embedded models' cards carry how they were trained and what they measured
    gen = HARGenerator.from_pretrained("har-tiny-mnist")
    gen.push_to_hub("me/har")
    assert uploaded["files"] == ["README.md", "card.json", "config.json", "generation_config.json", "model.safetensors"]
    assert (
        "restok train generator" in uploaded["card"]
        and "class accuracy" in uploaded["card"]
        and '"cfg_scale": 2.0' in uploaded["card"]
    )
    # offline means offline: RESTOK_OFFLINE alone stops a push before any Hub client is made
    monkeypatch.setenv("RESTOK_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **_: pytest.fail("a Hub client was made offline"))
    with pytest.raises(OSError, match="offline"):
        gen.push_to_hub("me/har")


@pytest.mark.slow
def test_generator_from_official_nested_training_config(tmp_path, tiny_gen):
    # the official generator run's config.yaml: both a vq_model and a generator block, with interpolations
    yaml_text = """
model:
  vq_model:
    codebook_size: 1024
    num_latent_tokens: 32
    num_min_tokens: 4
  generator:
    model_type: GPT-B
    vocab_size: ${model.vq_model.codebook_size}
    block_size: ${model.vq_model.num_latent_tokens}
    ar_token_num: ${model.vq_model.num_min_tokens}
    spe_token_num: 31
    num_classes: 10
    cls_token_num: 1
    gpt_type: c2i
    dropout_p: 0.1
    token_dropout_p: 0.1
    drop_path_rate: 0.0
    har: true
"""
    run = tmp_path / "run"
    (run / "checkpoint-10" / "ema_model").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml_text)
    torch.manual_seed(0)
    gen = HARGenerator.from_preset("har-b", num_tokens=32, vocab_size=1024, num_classes=10)
    torch.save(gen.state_dict(), run / "checkpoint-10" / "ema_model" / "pytorch_model.bin")
    loaded = HARGenerator.from_pretrained(str(run / "checkpoint-10" / "ema_model" / "pytorch_model.bin"))
    assert (loaded.config.dim, loaded.config.n_layer, loaded.config.vocab_size, loaded.config.ar_tokens) == (
        768,
        12,
        1024,
        4,
    )
    from restok.models.auto import convert_checkpoint

    kind, _ = convert_checkpoint(str(run / "checkpoint-10" / "ema_model" / "pytorch_model.bin"), tmp_path / "out")
    assert kind == "generator"


def test_saved_files_follow_the_umask_not_private(tmp_path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        ResTok.from_preset("restok-tiny").save_pretrained(str(tmp_path / "tok"))
    finally:
        os.umask(old)
    for f in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((tmp_path / "tok" / f).stat().st_mode) == 0o644, f


def test_parameter_count_is_the_models_and_built_once_per_config(monkeypatch) -> None:
    """The meta-device count equals a real model's, for every family's tiny preset; a config asked again is answered
    without building the skeleton again, and another config is counted afresh."""
    from restok.core.registry import model_classes

    for cls in (*model_classes("tokenizer"), *model_classes("generator")):
        name = next(n for n in cls.presets if "tiny" in n)
        torch.manual_seed(0)
        assert cls.parameter_count(cls.presets[name]) == sum(p.numel() for p in cls(cls.presets[name]).parameters())
    config = ResTok.presets["restok-tiny"]
    n = ResTok.parameter_count(config)

    def built_again(self: ResTok, cfg: Any) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(ResTok, "__init__", built_again)
    assert ResTok.parameter_count(config) == n
    with pytest.raises(AssertionError, match="built again"):
        ResTok.parameter_count(config.replace(depth=config.depth + 1))
