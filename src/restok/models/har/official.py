"""The official HAR generator checkpoint layout (github Kwai-Kolors/ResTok, on LlamaGen's GPT): how to recognise it,
and how its configs -- the flat LlamaGen ``ModelArgs`` and the nested generator training config -- map onto
:class:`HARConfig`: the ``layouts`` of HAR's registry entry. Pure functions on dicts; no model is built here."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ...core.registry import Layout
from ...core.release import REQUIRED, ReleaseConfig, ReleaseError
from .config import GPT_SIZES, HARConfig

__all__ = ["generator_config_from_official", "HAR_LAYOUTS"]


# The ``ModelArgs`` settings of LlamaGen's GPT that a HAR config takes as they are: field -> (key, kind, default).
_MODEL_ARGS = {
    "dim": ("dim", int, REQUIRED),
    "n_layer": ("n_layer", int, REQUIRED),
    "n_head": ("n_head", int, REQUIRED),
    "multiple_of": ("multiple_of", int, 256),
    "rope_base": ("rope_base", float, 10000.0),
    "norm_eps": ("norm_eps", float, 1e-5),
    "initializer_range": ("initializer_range", float, 0.02),
    "vocab_size": ("vocab_size", int, REQUIRED),
    "num_classes": ("num_classes", int, 1000),
    "class_dropout_prob": ("class_dropout_prob", float, 0.1),
    "token_dropout_p": ("token_dropout_p", float, 0.1),
    "attn_dropout_p": ("attn_dropout_p", float, 0.0),
    "resid_dropout_p": ("resid_dropout_p", float, 0.1),
    "ffn_dropout_p": ("ffn_dropout_p", float, 0.1),
    "drop_path_rate": ("drop_path_rate", float, 0.0),
}


def _class_conditional(r: ReleaseConfig, type_key: str) -> None:
    """Refuse what restok's HAR does not implement: text-conditional GPTs, several class tokens."""
    kind = r.get(type_key, str, "c2i")
    if kind != "c2i":
        raise ReleaseError(f"{r.path}{type_key} is {kind!r}: only class-conditional (c2i) generators are supported")
    if r.get("cls_token_num", int, 1) != 1:
        raise ReleaseError(f"{r.path}cls_token_num is {r.data['cls_token_num']}: only 1 is supported")


def _from_model_args(r: ReleaseConfig) -> HARConfig:
    """HARConfig from the flat LlamaGen ``ModelArgs`` (with HAR's ``ar_token_num``/``spe_token_num``)."""
    _class_conditional(r, "model_type")
    L = r.get("block_size", int)
    har = r.has("ar_token_num")
    values = r.read(_MODEL_ARGS)
    origins = {k: r.path + v for k, v in _HAR_KEYS.items()}
    return r.build(
        HARConfig,
        origins,
        num_tokens=L,
        n_kv_head=r.get("n_kv_head", int, None, optional=True),
        ffn_dim_multiplier=r.get("ffn_dim_multiplier", float, None, optional=True),
        ar_tokens=r.get("ar_token_num", int) if har else L,
        num_special_tokens=r.get("spe_token_num", int, L - 1) if har else 0,
        **values,
    )


_HAR_KEYS = {
    "num_tokens": "block_size",
    "ar_tokens": "ar_token_num",
    "num_special_tokens": "spe_token_num",
    "n_kv_head": "n_kv_head",
    "ffn_dim_multiplier": "ffn_dim_multiplier",
}


def _from_training_config(g: ReleaseConfig) -> HARConfig:
    """HARConfig from the official nested generator training config (``model.generator``): the size by name."""
    _class_conditional(g, "gpt_type")
    name = g.get("model_type", str)
    size = GPT_SIZES.get(name.removeprefix("GPT-"))
    if size is None:
        raise ReleaseError(f"{g.path}model_type is {name!r}; known: {sorted(f'GPT-{k}' for k in GPT_SIZES)}")
    dim, n_layer, n_head = size
    drop_path = g.get("drop_path_rate", float, 0.0)
    dropout = 0.0 if drop_path > 0 else g.get("dropout_p", float, 0.1)
    L = g.get("block_size", int)
    har = g.get("har", bool, False)
    values = g.read(
        {
            "vocab_size": ("vocab_size", int, REQUIRED),
            "num_classes": ("num_classes", int, 1000),
            "token_dropout_p": ("token_dropout_p", float, 0.1),
        }
    )
    origins = {k: g.path + v for k, v in _HAR_KEYS.items()}
    return g.build(
        HARConfig,
        {**origins, "resid_dropout_p": g.path + "dropout_p", "drop_path_rate": g.path + "drop_path_rate"},
        dim=dim,
        n_layer=n_layer,
        n_head=n_head,
        num_tokens=L,
        ar_tokens=g.get("ar_token_num", int, 4) if har else L,
        num_special_tokens=g.get("spe_token_num", int, 127) if har else 0,
        resid_dropout_p=dropout,
        ffn_dropout_p=dropout,
        drop_path_rate=drop_path,
        **values,
    )


def generator_config_from_official(cfg: Mapping[str, Any]) -> HARConfig:
    """Map the official flat ``ModelArgs`` config (or the nested training config) of a HAR/vanilla generator to ours,
    every value read strictly (:class:`~restok.core.release.ReleaseConfig`: errors name the key path)."""
    root = ReleaseConfig(cfg)
    if isinstance(cfg.get("model"), Mapping) and "generator" in cfg["model"]:
        return _from_training_config(root.section("model").section("generator", required=True))
    return _from_model_args(root)


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
    # a ModelArgs dump, recognised by several of its keys (so that one key left out is named, not "not a generator")
    return sum(k in cfg for k in _MODEL_ARGS_KEYS) >= 3 or (isinstance(model, Mapping) and "generator" in model)


_MODEL_ARGS_KEYS = ("dim", "n_layer", "n_head", "vocab_size", "block_size", "cls_token_num", "ar_token_num")


HAR_LAYOUTS = (Layout("official", _is_official_generator, generator_config_from_official),)
