"""The official HAR generator checkpoint layout (github Kwai-Kolors/ResTok, on LlamaGen's GPT): how to recognise it,
and how its configs -- the flat LlamaGen ``ModelArgs`` and the nested generator training config -- map onto
:class:`HARConfig`: the ``layouts`` of HAR's registry entry. Pure functions on dicts; no model is built here."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ...core.registry import Layout
from ...hub.files import CheckpointError
from .config import GPT_SIZES, HARConfig

__all__ = ["generator_config_from_official", "HAR_LAYOUTS"]


def _model_args_from_training_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Flat ``ModelArgs`` from the official nested generator config (``model.generator`` block)."""
    g = cfg["model"]["generator"]
    size = str(g.get("model_type")).removeprefix("GPT-")
    if size not in GPT_SIZES:
        known = sorted(f"GPT-{k}" for k in GPT_SIZES)
        raise CheckpointError(f"unknown official generator model_type {g.get('model_type')!r}; known: {known}")
    dim, n_layer, n_head = GPT_SIZES[size]
    dropout = 0.0 if float(g.get("drop_path_rate", 0.0)) > 0 else float(g.get("dropout_p", 0.1))
    args = {
        "dim": dim,
        "n_layer": n_layer,
        "n_head": n_head,
        "vocab_size": g["vocab_size"],
        "block_size": g["block_size"],
        "num_classes": g.get("num_classes", 1000),
        "cls_token_num": g.get("cls_token_num", 1),
        "model_type": g.get("gpt_type", "c2i"),
        "resid_dropout_p": dropout,
        "ffn_dropout_p": dropout,
        "drop_path_rate": g.get("drop_path_rate", 0.0),
        "token_dropout_p": g.get("token_dropout_p", 0.1),
    }
    if g.get("har", False):
        args["ar_token_num"] = g.get("ar_token_num", 4)
        args["spe_token_num"] = g.get("spe_token_num", 127)
    return args


def generator_config_from_official(cfg: Mapping[str, Any]) -> HARConfig:
    """Map the official flat ``ModelArgs`` config (or the nested training config) of a HAR/vanilla generator to ours."""
    if isinstance(cfg.get("model"), Mapping) and "generator" in cfg["model"]:
        cfg = _model_args_from_training_config(cfg)
    if cfg.get("model_type", "c2i") != "c2i":
        raise CheckpointError(f"only class-conditional (c2i) generators are supported, got {cfg.get('model_type')!r}")
    if int(cfg.get("cls_token_num", 1)) != 1:
        raise CheckpointError("only cls_token_num = 1 is supported")
    L = int(cfg["block_size"])
    has_har = "ar_token_num" in cfg
    return HARConfig(
        dim=int(cfg["dim"]),
        n_layer=int(cfg["n_layer"]),
        n_head=int(cfg["n_head"]),
        n_kv_head=cfg.get("n_kv_head"),
        multiple_of=int(cfg.get("multiple_of", 256)),
        ffn_dim_multiplier=cfg.get("ffn_dim_multiplier"),
        rope_base=float(cfg.get("rope_base", 10000)),
        norm_eps=float(cfg.get("norm_eps", 1e-5)),
        initializer_range=float(cfg.get("initializer_range", 0.02)),
        num_tokens=L,
        vocab_size=int(cfg["vocab_size"]),
        num_classes=int(cfg.get("num_classes", 1000)),
        ar_tokens=int(cfg["ar_token_num"]) if has_har else L,
        num_special_tokens=int(cfg.get("spe_token_num", L - 1)) if has_har else 0,
        class_dropout_prob=float(cfg.get("class_dropout_prob", 0.1)),
        token_dropout_p=float(cfg.get("token_dropout_p", 0.1)),
        attn_dropout_p=float(cfg.get("attn_dropout_p", 0.0)),
        resid_dropout_p=float(cfg.get("resid_dropout_p", 0.1)),
        ffn_dropout_p=float(cfg.get("ffn_dropout_p", 0.1)),
        drop_path_rate=float(cfg.get("drop_path_rate", 0.0)),
    )


def _is_official_generator(cfg: Mapping[str, Any] | None, keys: Collection[str]) -> bool:
    """The flat LlamaGen ``ModelArgs`` config, the nested generator training config, or the GPT's weights."""
    if keys and "tok_embeddings.weight" not in keys:
        return False  # weights, but not a GPT's
    if "tok_embeddings.weight" in keys and (not cfg or cfg.get("format")):
        return False  # GPT weights without a full config beside them are LlamaGen's own release (models.llamagen_gpt)
    cfg = cfg or {}
    if cfg.get("family") == "llamagen-gpt":  # a flat GPT config says which position code its weights were trained with
        return False
    model = cfg.get("model")
    return ("n_layer" in cfg and "vocab_size" in cfg) or (isinstance(model, Mapping) and "generator" in model)


HAR_LAYOUTS = (Layout("official", _is_official_generator, generator_config_from_official),)
