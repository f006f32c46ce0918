"""The official ResTok tokenizer checkpoint layout (github Kwai-Kolors/ResTok): how to recognise it, and how the
official nested OmegaConf config (``model.vq_model``, ``dataset.preprocessing``) maps onto :class:`ResTokConfig` --
the ``layouts`` of ResTok's registry entry. Pure functions on dicts; no model is built here."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ...core.registry import Layout
from ...hub.files import CheckpointError
from ..layers.pixel_cnn import PixelCNNConfig
from .config import ResTokConfig

__all__ = [
    "TOKENIZER_TRAINING_ONLY",
    "RESTOK_VIT_SIZES",
    "tokenizer_config_from_official",
    "restok_weights",
    "RESTOK_LAYOUTS",
]

# Keys of the official training checkpoints that inference does not use.
TOKENIZER_TRAINING_ONLY = ("foundation_model.", "vf_proj.", "vf_proj_dec.", "mlp_proj.", "decoder.feat_mask_token")
# The official code's ViT sizes, (width, depth, heads) by ``vit_enc_model_size``/``vit_dec_model_size``. Its "small"
# has 6 layers where TiTok's has 8 (restok.models.titok.VIT_SIZES): two architectures, two tables.
RESTOK_VIT_SIZES = {"small": (512, 6, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}


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
    enc = RESTOK_VIT_SIZES[vq.get("vit_enc_model_size", "large")]
    dec = RESTOK_VIT_SIZES[vq.get("vit_dec_model_size", "large")]
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


def restok_weights(keys: Collection[str]) -> bool:
    """Whether weight names are a ResTok tokenizer's: its CNN pixel encoder and ViT ``blocks`` (TiTok's ViT has a
    ``transformer``, LlamaGen's VQ ``conv_blocks``)."""
    return any(k.startswith(("pixel_encoder.", "encoder.blocks.")) for k in keys)


def _is_official_tokenizer(cfg: Mapping[str, Any] | None, keys: Collection[str]) -> bool:
    """The nested OmegaConf config (``model.vq_model``) of the official tokenizer, or its weights."""
    if "tok_embeddings.weight" in keys:
        return False  # a GPT's weights
    if restok_weights(keys):
        return not (cfg or {}).get("format")
    if any(k.startswith("encoder.") for k in keys):
        return False  # another family's encoder
    model = (cfg or {}).get("model")
    if not (isinstance(model, Mapping) and isinstance(model.get("vq_model"), Mapping) and "generator" not in model):
        return False
    vq = model["vq_model"]
    return any(k in vq for k in _RESTOK_SETTINGS) or "vit_enc_model_size" not in vq


RESTOK_LAYOUTS = (Layout("official", _is_official_tokenizer, tokenizer_config_from_official),)
