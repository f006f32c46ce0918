"""Typed, validated configurations of the tokenizer (Sec. 3) and the HAR generator (Sec. 4), and their named presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import hierarchy as H
from .fields import Config, check_field_types, config_from_dict, replace_checked, setting

__all__ = [
    "PixelCNNConfig",
    "ResTokConfig",
    "HARConfig",
    "TOKENIZER_PRESETS",
    "GENERATOR_PRESETS",
    "tokenizer_preset",
    "generator_preset",
    "config_from_dict",
    "check_field_types",
]


@dataclass(frozen=True)
class PixelCNNConfig(Config):
    """MaskGIT-style CNN pixel encoder/decoder (App. A.1); the official one is 128 wide and 16x."""

    hidden_channels: int = setting(128, ge=1, le=8192)  # width of the first stage
    channel_mult: tuple[int, ...] = setting(
        (1, 1, 2, 2, 4), ge=1, le=64
    )  # per-stage width multipliers; len-1 downsamplings
    num_res_blocks: int = setting(2, ge=1, le=64)
    z_channels: int = setting(256, ge=1, le=65536)  # channels handed to / taken from the ViT's 1x1 projections
    num_groups: int = setting(32, ge=1, le=8192)  # GroupNorm groups

    def __post_init__(self) -> None:
        check_field_types(self)
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ValueError(f"channel_mult must be a non-empty tuple of positive ints, got {self.channel_mult}")
        for m in self.channel_mult:
            if (self.hidden_channels * m) % self.num_groups:
                raise ValueError(
                    f"pixel CNN width {self.hidden_channels * m} is not divisible by num_groups={self.num_groups}"
                )
        if self.num_res_blocks < 1 or self.z_channels < 1:
            raise ValueError("num_res_blocks and z_channels must be positive")

    @property
    def downsample(self) -> int:
        """Spatial downsampling factor of the encoder (2 per stage but the last)."""
        return 2 ** (len(self.channel_mult) - 1)


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
        H.image_level_grids((grid, grid), self.hierarchy_stages)
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


@dataclass(frozen=True)
class HARConfig(Config):
    """LlamaGen-style GPT with hierarchical autoregressive groups (Sec. 4). Defaults are the official GPT-L."""

    dim: int = setting(1024, ge=1, le=65536)
    n_layer: int = setting(24, ge=1, le=1024)
    n_head: int = setting(16, ge=1, le=1024)
    n_kv_head: int | None = setting(None, ge=1, le=1024)
    multiple_of: int = setting(256, ge=1, le=65536)  # SwiGLU hidden size rounded up to a multiple of this
    ffn_dim_multiplier: float | None = setting(None, gt=0, le=64)
    rope_base: float = setting(10000.0, gt=0)
    norm_eps: float = setting(1e-5, gt=0, le=1)
    initializer_range: float = setting(0.02, ge=0, le=10)
    num_tokens: int = setting(128, ge=2, le=8192)  # block size L
    vocab_size: int = setting(8192, ge=2, le=2**24)  # = the tokenizer's codebook size
    num_classes: int = setting(1000, ge=1, le=2**24)
    ar_tokens: int = setting(
        4, ge=1, le=8192
    )  # A tokens predicted one by one; A = num_tokens gives vanilla next-token AR
    num_special_tokens: int | None = setting(
        None, ge=0, le=8192
    )  # rows of the special-token table; None = L-1 (official) or 0 for vanilla
    class_dropout_prob: float = setting(0.1, ge=0, lt=1)  # label dropout for classifier-free guidance
    token_dropout_p: float = setting(0.1, ge=0, lt=1)
    attn_dropout_p: float = setting(0.0, ge=0, lt=1)
    resid_dropout_p: float = setting(0.1, ge=0, lt=1)
    ffn_dropout_p: float = setting(0.1, ge=0, lt=1)
    drop_path_rate: float = setting(0.0, ge=0, lt=1)

    def __post_init__(self) -> None:
        check_field_types(self)
        H.har_step_positions(self.num_tokens, self.ar_tokens)  # validates num_tokens and ar_tokens
        if self.dim % self.n_head or (self.dim // self.n_head) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_head} heads of even size")
        kv = self.n_kv_head or self.n_head
        if self.n_head % kv:
            raise ValueError(f"n_head {self.n_head} must be a multiple of n_kv_head {kv}")
        if self.vocab_size < 2 or self.num_classes < 1 or self.n_layer < 1:
            raise ValueError("vocab_size must be >= 2, num_classes >= 1 and n_layer >= 1")
        need = H.har_input_layout(self.num_tokens, self.ar_tokens).num_special
        if self.num_special_tokens is not None and self.num_special_tokens < need:
            raise ValueError(
                f"num_special_tokens={self.num_special_tokens} is too small: the HAR layout for "
                f"{self.num_tokens} tokens with ar_tokens={self.ar_tokens} uses {need}"
            )
        for name in ("class_dropout_prob", "token_dropout_p", "attn_dropout_p", "resid_dropout_p", "ffn_dropout_p"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def vanilla(self) -> bool:
        """True when every token is predicted one by one (App. B)."""
        return self.ar_tokens == self.num_tokens

    @property
    def special_rows(self) -> int:
        """Rows of the special-token embedding table."""
        if self.num_special_tokens is not None:
            return self.num_special_tokens
        return 0 if self.vanilla else self.num_tokens - 1

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU hidden size: ``2/3 * 4 * dim`` (times the multiplier) rounded up to ``multiple_of``."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return -(-hidden // self.multiple_of) * self.multiple_of

    @property
    def num_steps(self) -> int:
        """Generator calls per sample: 9 for HAR-128, L for vanilla AR."""
        return H.har_num_steps(self.num_tokens, self.ar_tokens)

    def summary(self) -> str:
        """One line for listings (``restok info``)."""
        return f"{self.n_layer:3d} layers x {self.dim:5d}  {self.num_tokens:4d} tokens in {self.num_steps} calls"


# ----------------------------------------------------------------------------------------------------
# Presets

TOKENIZER_PRESETS: dict[str, ResTokConfig] = {
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

GENERATOR_PRESETS: dict[str, HARConfig] = {
    "har-b": HARConfig(dim=768, n_layer=12, n_head=12),
    "har-l": HARConfig(dim=1024, n_layer=24, n_head=16),
    "har-xl": HARConfig(dim=1280, n_layer=36, n_head=20),
    "har-xxl": HARConfig(dim=1536, n_layer=48, n_head=24),
    "har-tiny": HARConfig(dim=128, n_layer=4, n_head=4, num_tokens=32, vocab_size=1024, num_classes=10, multiple_of=32),
}


def tokenizer_preset(name: str, **overrides: Any) -> ResTokConfig:
    """The named tokenizer config, with optional field overrides."""
    if name not in TOKENIZER_PRESETS:
        raise ValueError(f"unknown tokenizer preset {name!r}; available: {sorted(TOKENIZER_PRESETS)}")
    return replace_checked(TOKENIZER_PRESETS[name], overrides)


def generator_preset(name: str, **overrides: Any) -> HARConfig:
    """The named generator config; ``num_tokens``, ``vocab_size``, ``num_classes``, ``ar_tokens`` etc. may be
    overridden."""
    if name not in GENERATOR_PRESETS:
        raise ValueError(f"unknown generator preset {name!r}; available: {sorted(GENERATOR_PRESETS)}")
    return replace_checked(GENERATOR_PRESETS[name], overrides)
