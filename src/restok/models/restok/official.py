"""The official ResTok tokenizer checkpoint layout (github Kwai-Kolors/ResTok): how to recognise it, and how the
official nested OmegaConf config (``model.vq_model``, ``dataset.preprocessing``) maps onto :class:`ResTokConfig` --
the ``layouts`` of ResTok's registry entry. Pure functions on dicts; no model is built here."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ...core.registry import Layout
from ...core.release import REQUIRED, ReleaseConfig, ReleaseError
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
    """Map the official nested tokenizer config (``model.vq_model``, ``dataset.preprocessing``) to ours, every value
    read strictly (:class:`~restok.core.release.ReleaseConfig`: errors name the key path).

    Raises for official options whose code paths are broken or that no released model uses.
    """
    root = ReleaseConfig(cfg)
    vq = root.section("model", required=True).section("vq_model", required=True)
    crop = root.section("dataset").section("preprocessing").get("crop_size", int, 256)
    _refuse_unsupported(vq)
    enc = vq.choice("vit_enc_model_size", RESTOK_VIT_SIZES, "large")
    dec = vq.choice("vit_dec_model_size", RESTOK_VIT_SIZES, "large")
    pixel_section = vq.section("pixel_cnn")
    pixel = _pixel_cnn(pixel_section)
    pooling = _pooling_factor(vq)
    merge = vq.get("merge_tokens", bool, False)
    stages = vq.get("hierarchy_stages", int, 4) if merge else 1
    drop_prob = vq.get("drop_prob", float, 0.2)
    values = vq.read(
        {
            "num_tokens": ("num_latent_tokens", int, REQUIRED),
            "min_tokens": ("num_min_tokens", int, 4),
            "codebook_size": ("codebook_size", int, REQUIRED),
            "token_size": ("token_size", int, REQUIRED),
            "residual_image_tokens": ("residual_image_tokens", bool, True),
            "residual_latent_tokens": ("residual_latent_tokens", bool, True),
            "latent_hierarchy": ("latent_hierarchy", bool, True),
            "learnable_dec_image_tokens": ("learnable_dec_image_tokens", bool, True),
            "rope_theta": ("rope_base_len", float, 10000.0),
            "use_l2_norm": ("use_l2_norm", bool, False),
            "commitment_cost": ("commitment_cost", float, 0.25),
            "entropy_loss_ratio": ("entropy_loss_ratio", float, 0.0),
        }
    )
    sizes = {
        "width": "vit_enc_model_size",
        "decoder_width": "vit_dec_model_size",
        "hierarchy_stages": "hierarchy_stages",
        "pooling_factor": "reduction_ratio",
    }
    out = vq.build(
        ResTokConfig,
        {
            **{k: vq.path + v for k, v in sizes.items()},
            "drop_prob": vq.path + "drop_prob",
            "image_size": "dataset.preprocessing.crop_size",
            **{f"pixel_cnn.{k}": v for k, v in pixel_section.origins.items()},
        },
        image_size=crop,
        width=enc[0],
        depth=enc[1],
        num_heads=enc[2],
        decoder_width=dec[0],
        decoder_depth=dec[1],
        decoder_num_heads=dec[2],
        hierarchy_stages=max(stages, 1),
        pooling_factor=pooling,
        nested_dropout=vq.get("drop_latent_tokens", bool, True) and drop_prob > 0,
        drop_prob=drop_prob or 0.2,
        pixel_cnn=pixel,
        **values,
    )
    _check_grid(vq, crop, out)
    return out


def _pooling_factor(vq: ReleaseConfig) -> int:
    """The merge's pooling factor from the official ``reduction_ratio`` r: a level of n tokens merges into n (1 - r),
    so f = 1 / (1 - r) (0 -> 1, 0.5 -> 2, 0.75 -> 4); a ratio that is not 1 - 1/f for an integer f is refused."""
    ratio = vq.get("reduction_ratio", float, 0.5)
    factor = round(1 / (1 - ratio)) if 0 <= ratio < 1 else 0
    if factor < 1 or abs(1 - 1 / factor - ratio) > 1e-9:
        raise ReleaseError(
            f"{vq.path}reduction_ratio is {ratio}: restok merges by 1 - 1/f for an integer f (0, 0.5, 0.75)"
        )
    return factor


def _refuse_unsupported(vq: ReleaseConfig) -> None:
    """Refuse the official options whose code paths are broken or that no released model uses."""
    unsupported = {
        "learnable_latent_tokens": (False, "broken in the official code (undefined _expand_token)"),
        "multi_quant": (True, "only per-level output heads are implemented"),
        "vae_encoder": (True, "only the CNN pixel encoder is implemented"),
        "is_legacy": (True, "only the legacy (TiTok) heads of the released weights are implemented"),
    }
    for key, (want, why) in unsupported.items():
        if vq.get(key, bool, want) != want:
            raise ReleaseError(f"{vq.path}{key} is {not want}: not supported ({why})")


def _check_grid(vq: ReleaseConfig, crop: int, out: ResTokConfig) -> None:
    """The ViT's patch size must give the grid the pixel CNN makes."""
    patch = vq.get("vit_enc_patch_size", int, 16)
    if patch < 1 or crop // patch != out.grid_size:
        raise ReleaseError(
            f"dataset.preprocessing.crop_size {crop} / {vq.path}vit_enc_patch_size {patch} does not give the "
            f"{out.grid_size}x{out.grid_size} grid the pixel CNN's {out.pixel_cnn.downsample}x downsampling makes"
        )


def _pixel_cnn(section: ReleaseConfig) -> PixelCNNConfig:
    """The official ``pixel_cnn`` block (every key optional), read strictly."""
    d = PixelCNNConfig()
    values = section.read(
        {
            "hidden_channels": ("hidden_channels", int, d.hidden_channels),
            "num_res_blocks": ("num_res_blocks", int, d.num_res_blocks),
            "z_channels": ("z_channels", int, d.z_channels),
            "num_groups": ("num_groups", int, d.num_groups),
        }
    )
    known = {"hidden_channels", "num_res_blocks", "z_channels", "num_groups", "channel_mult"}
    unknown = sorted(set(section.data) - known)
    if unknown:
        raise ReleaseError(f"{section.path}{unknown[0]} is not a pixel CNN setting; known: {sorted(known)}")
    mult = section.ints("channel_mult", d.channel_mult)
    section.origins["channel_mult"] = section.path + "channel_mult"
    return section.build(PixelCNNConfig, channel_mult=mult, **values)


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
