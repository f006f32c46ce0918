"""The official ResTok/LlamaGen checkpoint layouts (github Kwai-Kolors/ResTok): how to recognise them, and how the
official configs (the nested OmegaConf tokenizer config, the flat generator ``ModelArgs``, the nested generator
training config) map onto this package's typed configs -- the ``layouts`` of the ResTok and HAR registry entries.
Pure functions on dicts; no model is built here."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..core.configs import HARConfig, PixelCNNConfig, ResTokConfig
from ..core.registry import Layout
from ..hub.files import CheckpointError

__all__ = [
    "TOKENIZER_TRAINING_ONLY",
    "tokenizer_config_from_official",
    "generator_config_from_official",
    "RESTOK_LAYOUTS",
    "HAR_LAYOUTS",
]

# Keys of the official training checkpoints that inference does not use.
TOKENIZER_TRAINING_ONLY = ("foundation_model.", "vf_proj.", "vf_proj_dec.", "mlp_proj.", "decoder.feat_mask_token")
_VIT_SIZES = {"small": (512, 6, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}


def tokenizer_config_from_official(cfg: Mapping[str, Any]) -> ResTokConfig:
    """Map the official nested tokenizer config (``model.vq_model``, ``dataset.preprocessing``) to ours.

    Raises for official options whose code paths are broken or that no released model uses.
    """
    vq = dict(cfg["model"]["vq_model"])
    crop = int(cfg.get("dataset", {}).get("preprocessing", {}).get("crop_size", 256))
    unsupported = {
        "learnable_latent_tokens": (False, "broken in the official code (undefined _expand_token)"),
        "multi_quant": (True, "only per-level output heads are implemented"),
        "vae_encoder": (True, "only the CNN pixel encoder is implemented"),
        "is_legacy": (True, "only the legacy (TiTok) heads of the released weights are implemented"),
    }
    for key, (want, why) in unsupported.items():
        if key in vq and bool(vq[key]) != want:
            raise CheckpointError(f"official config sets {key}={vq[key]}: not supported ({why})")
    if float(vq.get("reduction_ratio", 0.5)) != 0.5:
        raise CheckpointError(f"official config sets reduction_ratio={vq['reduction_ratio']}: only 0.5 is supported")
    enc = _VIT_SIZES[vq.get("vit_enc_model_size", "large")]
    dec = _VIT_SIZES[vq.get("vit_dec_model_size", "large")]
    pixel = PixelCNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in vq.get("pixel_cnn", {}).items()})
    stages = int(vq.get("hierarchy_stages", 4)) if vq.get("merge_tokens", False) else 1
    out = ResTokConfig(
        image_size=crop,
        num_tokens=int(vq["num_latent_tokens"]),
        min_tokens=int(vq.get("num_min_tokens", 4)),
        codebook_size=int(vq["codebook_size"]),
        token_size=int(vq["token_size"]),
        width=enc[0],
        depth=enc[1],
        num_heads=enc[2],
        decoder_width=dec[0],
        decoder_depth=dec[1],
        decoder_num_heads=dec[2],
        hierarchy_stages=max(stages, 1),
        residual_image_tokens=bool(vq.get("residual_image_tokens", True)),
        residual_latent_tokens=bool(vq.get("residual_latent_tokens", True)),
        latent_hierarchy=bool(vq.get("latent_hierarchy", True)),
        learnable_dec_image_tokens=bool(vq.get("learnable_dec_image_tokens", True)),
        rope_theta=float(vq.get("rope_base_len", 10000)),
        use_l2_norm=bool(vq.get("use_l2_norm", False)),
        commitment_cost=float(vq.get("commitment_cost", 0.25)),
        entropy_loss_ratio=float(vq.get("entropy_loss_ratio", 0.0)),
        nested_dropout=bool(vq.get("drop_latent_tokens", True)) and float(vq.get("drop_prob", 0.2)) > 0,
        drop_prob=float(vq.get("drop_prob", 0.2)) or 0.2,
        pixel_cnn=pixel,
    )
    patch = int(vq.get("vit_enc_patch_size", 16))
    if crop // patch != out.grid_size:
        raise CheckpointError(
            f"official config: crop_size {crop} / vit_enc_patch_size {patch} = {crop // patch}, but the pixel CNN "
            f"downsamples {out.pixel_cnn.downsample}x to a {out.grid_size} grid"
        )
    return out


_GPT_SIZES = {  # LlamaGen model_type -> (n_layer, n_head, dim)
    "GPT-B": (12, 12, 768),
    "GPT-L": (24, 16, 1024),
    "GPT-XL": (36, 20, 1280),
    "GPT-XXL": (48, 24, 1536),
    "GPT-XXXL": (48, 40, 2560),
    "GPT-1B": (22, 32, 2048),
    "GPT-3B": (24, 32, 3200),
    "GPT-7B": (32, 32, 4096),
}


def _model_args_from_training_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Flat ``ModelArgs`` from the official nested generator config (``model.generator`` block)."""
    g = cfg["model"]["generator"]
    if g.get("model_type") not in _GPT_SIZES:
        raise CheckpointError(
            f"unknown official generator model_type {g.get('model_type')!r}; known: {sorted(_GPT_SIZES)}"
        )
    n_layer, n_head, dim = _GPT_SIZES[g["model_type"]]
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


# Settings only ResTok's official configs have (TiTok's, which share the ``model.vq_model`` nesting, have none).
_RESTOK_SETTINGS = (
    "merge_tokens",
    "hierarchy_stages",
    "pixel_cnn",
    "drop_latent_tokens",
    "latent_hierarchy",
    "residual_image_tokens",
    "residual_latent_tokens",
)


def _keys_say(keys: Collection[str]) -> str | None:
    """``"tokenizer"`` or ``"generator"`` when the weight names say it is ResTok's/the HAR GPT's, else None: ResTok's
    CNN pixel encoder and ViT ``blocks`` (TiTok's ViT has a ``transformer``, LlamaGen's VQ ``conv_blocks``)."""
    if "tok_embeddings.weight" in keys:
        return "generator"
    if any(k.startswith(("pixel_encoder.", "encoder.blocks.")) for k in keys):
        return "tokenizer"
    return None


def _is_official_tokenizer(cfg: Mapping[str, Any] | None, keys: Collection[str]) -> bool:
    """The nested OmegaConf config (``model.vq_model``) of the official tokenizer, or its weights."""
    said = _keys_say(keys)
    if said is not None:
        return said == "tokenizer" and not (cfg or {}).get("format")
    if any(k.startswith("encoder.") for k in keys):
        return False  # another family's encoder
    model = (cfg or {}).get("model")
    if not (isinstance(model, Mapping) and isinstance(model.get("vq_model"), Mapping) and "generator" not in model):
        return False
    vq = model["vq_model"]
    return any(k in vq for k in _RESTOK_SETTINGS) or "vit_enc_model_size" not in vq


def _is_official_generator(cfg: Mapping[str, Any] | None, keys: Collection[str]) -> bool:
    """The flat LlamaGen ``ModelArgs`` config, the nested generator training config, or the GPT's weights."""
    said = _keys_say(keys)
    if said is not None and (said != "generator" or not cfg or cfg.get("format")):
        return False  # GPT weights without a full config beside them are LlamaGen's own release (models.llamagen_gpt)
    cfg = cfg or {}
    if cfg.get("family") == "llamagen-gpt":  # a flat GPT config says which position code its weights were trained with
        return False
    model = cfg.get("model")
    return ("n_layer" in cfg and "vocab_size" in cfg) or (isinstance(model, Mapping) and "generator" in model)


RESTOK_LAYOUTS = (Layout("official", _is_official_tokenizer, tokenizer_config_from_official),)
HAR_LAYOUTS = (Layout("official", _is_official_generator, generator_config_from_official),)
