"""The ResTok tokenizer's configuration (Sec. 3) and its named presets: the released ResTok-L and a tiny CPU one.

The family's other facts live beside it: the official checkpoint layout in :mod:`.official`, the model in
:mod:`.model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...core import hierarchy as H
from ...core.fields import Config, check_field_types, replace_checked, setting
from ..layers.pixel_cnn import PixelCNNConfig

__all__ = ["ResTokConfig", "RESTOK_PRESETS", "TOKENIZER_PRESETS", "tokenizer_preset"]


@dataclass(frozen=True)
class ResTokConfig(Config):
    """ResTok tokenizer (Sec. 3). Defaults are the official ``restok_l_128``."""

    image_size: int = setting(256, ge=1, le=8192)
    num_tokens: int = setting(128, ge=2, le=8192)  # L latent tokens, a power of two
    min_tokens: int = setting(4, ge=1, le=8192)  # shortest nested prefix (Sec. 5.1)
    codebook_size: int = setting(8192, ge=2, le=2**24)
    token_size: int = setting(8, ge=1, le=65536)  # code dimension
    width: int = setting(1024, ge=1, le=65536)  # ViT encoder
    depth: int = setting(24, ge=1, le=1024)
    num_heads: int = setting(16, ge=1, le=1024)
    decoder_width: int = setting(1024, ge=1, le=65536)
    decoder_depth: int = setting(24, ge=1, le=1024)
    decoder_num_heads: int = setting(16, ge=1, le=1024)
    mlp_ratio: float = setting(4.0, gt=0, le=64)
    hierarchy_stages: int = setting(
        4, ge=1, le=64
    )  # S image-token levels; S-1 residual merges (Alg. 2); 1 = no merging
    # Tokens of a level merged into one of the next coarser level (Table 3; the official reduction_ratio = 1 - 1/f)
    pooling_factor: int = setting(2, ge=1, le=64)
    residual_image_tokens: bool = True  # Alg. 2 line 4
    residual_latent_tokens: bool = True  # Alg. 1 line 5
    latent_hierarchy: bool = True  # multi-level pooled latent init; False = 1-D area interpolation (TiTok-like)
    # Decoder image queries: one learned token repeated (official default, released weights) or, when False,
    # the embedded latents of every level upsampled to the image grid and summed (official
    # ``learnable_dec_image_tokens: False``), which gives the queries image content from the first step.
    learnable_dec_image_tokens: bool = True
    rope_theta: float = setting(10000.0, gt=0)
    use_l2_norm: bool = True  # l2-normalised codes and codebook
    commitment_cost: float = setting(0.25, ge=0)
    entropy_loss_ratio: float = setting(0.0, ge=0)
    nested_dropout: bool = True  # training only (Sec. 3.4)
    drop_prob: float = setting(0.2, ge=0, le=1)  # 1 - P(keep all tokens)
    pixel_cnn: PixelCNNConfig = field(default_factory=PixelCNNConfig)
    # Training-only representation alignment (Sec. 3.4, "VF" in the official code): the feature size of the
    # frozen teacher (1024 for DINOv3-L); 0 = no projection head. Inference checkpoints keep these at 0.
    encoder_feature_dim: int = setting(0, ge=0, le=65536)  # adds vf_proj on the coarsest image tokens
    decoder_feature_dim: int = setting(
        0, ge=0, le=65536
    )  # adds feature queries (feat_mask_token) and vf_proj_dec in the decoder

    def __post_init__(self) -> None:
        check_field_types(self)
        H.latent_level_sizes(self.num_tokens)  # power of two >= 2
        H.prefix_lengths(self.num_tokens, self.min_tokens)
        if self.codebook_size < 2 or self.token_size < 1:
            raise ValueError("codebook_size must be >= 2 and token_size >= 1")
        for name, w, d, h in (
            ("encoder", self.width, self.depth, self.num_heads),
            ("decoder", self.decoder_width, self.decoder_depth, self.decoder_num_heads),
        ):
            if d < 1 or h < 1 or w % h:
                raise ValueError(f"{name} width {w} must be divisible by its {h} heads, depth >= 1")
            if (w // h) % 4:
                raise ValueError(f"{name} head size {w // h} must be divisible by 4 for the 2-D RoPE")
        down = self.pixel_cnn.downsample
        if self.image_size % down:
            raise ValueError(f"image_size {self.image_size} is not divisible by the pixel CNN's {down}x downsampling")
        grid = self.image_size // down
        H.merge_layers(self.depth, self.hierarchy_stages)
        H.image_level_grids((grid, grid), self.hierarchy_stages, self.pooling_factor)
        biggest = max(max(g) for g in H.latent_pool_grids(self.num_tokens))
        if self.latent_hierarchy and biggest > grid:
            raise ValueError(
                f"image_size {self.image_size} gives a {grid}x{grid} feature grid, too small to pool the "
                f"{self.num_tokens}-token latent levels (largest pooled grid side {biggest}); "
                "use a larger image or fewer tokens"
            )
        if self.encoder_feature_dim < 0 or self.decoder_feature_dim < 0:
            raise ValueError("encoder_feature_dim and decoder_feature_dim must be >= 0 (0 = off)")
        if self.nested_dropout and not 0.0 < self.drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in (0, 1] with nested_dropout on, got {self.drop_prob}")

    @property
    def grid_size(self) -> int:
        """Side of the CNN feature grid (image tokens per row)."""
        return self.image_size // self.pixel_cnn.downsample

    @property
    def prefix_lengths(self) -> tuple[int, ...]:
        """Allowed decode lengths (nested prefixes), e.g. 4, 8, ..., 128."""
        return H.prefix_lengths(self.num_tokens, self.min_tokens)

    def summary(self) -> str:
        """One line for listings (``restok info``)."""
        return f"{self.image_size:4d}px  {self.num_tokens:4d} tokens  prefixes {list(self.prefix_lengths)}"


RESTOK_PRESETS: dict[str, ResTokConfig] = {
    # The released ResTok-L: 256 px, ViT-L encoder and decoder, 128 tokens, 8192 x 8 codebook.
    "restok-l-128": ResTokConfig(),
    # Small enough to train on CPU in minutes: 32 px, 4x CNN, 8x8 grid, 32 tokens.
    "restok-tiny": ResTokConfig(
        image_size=32,
        num_tokens=32,
        min_tokens=4,
        codebook_size=1024,
        token_size=8,
        width=128,
        depth=4,
        num_heads=4,
        decoder_width=128,
        decoder_depth=4,
        decoder_num_heads=4,
        hierarchy_stages=3,
        pixel_cnn=PixelCNNConfig(hidden_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, z_channels=64),
    ),
}
# The name the presets had when ResTok was restok's only tokenizer (``restok.TOKENIZER_PRESETS``).
TOKENIZER_PRESETS = RESTOK_PRESETS


def tokenizer_preset(name: str, **overrides: Any) -> ResTokConfig:
    """The named ResTok config, with optional field overrides."""
    if name not in RESTOK_PRESETS:
        raise ValueError(f"unknown tokenizer preset {name!r}; available: {sorted(RESTOK_PRESETS)}")
    return replace_checked(RESTOK_PRESETS[name], overrides)
