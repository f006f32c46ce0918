"""TiTok (Yu et al. 2024, "An Image is Worth 32 Tokens") and One-D-Piece (Miwa et al. 2025): the flat 1-D
tokenizers ResTok is compared with (Table 1), loaded from their public releases in their own layouts.

TiTok: a ViT encoder reads the image patches and ``L`` learned latent tokens; the latents are quantized (l2-normed
codes for the VQ releases); a ViT decoder reads the codes and one mask token per patch. The two-stage releases
(L-32, B-64, S-128: ``finetune_decoder``) predict, per patch, logits over the 1,024 codes of MaskGIT's VQGAN, whose
softmax-weighted code vectors its CNN decoder turns into pixels; the single-stage VQ-8k releases (BL-64, BL-128,
SL-256: ``is_legacy: False``) predict the patch pixels directly, then a 3x3 conv. One-D-Piece is a two-stage TiTok
trained with tail-token drop: its decoder takes any number ``k <= L`` of leading codes (only their positional
embeddings are added), so every prefix decodes. TiTok's VAE releases give continuous latents, not ids: they are
refused by name (they do not fit a discrete tokenizer's contract).

Written from the computations of github.com/bytedance/1d-tokenizer (``modeling/titok.py``,
``modeling/modules/blocks.py``, ``maskgit_vqgan.py``) and github.com/turingmotors/One-D-Piece, with their
state-dict names; ``tests/parity/make_family_fixtures.py`` runs those repositories' code for the parity tests.
Quirks kept for the released weights: the legacy encoder head reshapes (B, L, W) latents to (B, W, L, 1) without
a transpose before its 1x1 conv; the pixel CNN's shortcut applies to the block's output (see layers/pixel_cnn).
Images are taken in [0, 1] without normalisation, as the releases were trained.

Axes: B batch, L latent tokens, k kept tokens, P patches (g x g), W width, C code size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..core.fields import Config, check_field_types, setting
from ..core.registry import Layout, register_model
from ..core.release import REQUIRED, ReleaseConfig, ReleaseError, WeightShapes
from ..hub.provenance import Provenance
from .layers.pixel_cnn import PixelCNNConfig, PixelDecoder, PixelEncoder
from .layers.quantizer import VectorQuantizer
from .layers.vit import TITOK_BLOCK, Block
from .tokenizer import Tokenizer
from .training import TokenizerOutput, TrainingHook

__all__ = ["TiTokConfig", "TiTok", "OneDPiece", "MaskGITTeacher", "TITOK_PRESETS", "ONE_D_PIECE_PRESETS", "VIT_SIZES"]

# The releases name their ViTs by size: (width, depth, heads), as blocks.py's tables.
VIT_SIZES = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}


@dataclass(frozen=True)
class TiTokConfig(Config):
    """A TiTok / One-D-Piece tokenizer. Defaults are TiTok-L-32."""

    config_name = "TiTok"

    image_size: int = setting(256, ge=1, le=8192)
    patch_size: int = setting(16, ge=1, le=1024)
    num_tokens: int = setting(32, ge=1, le=8192)
    codebook_size: int = setting(4096, ge=2, le=2**24)
    token_size: int = setting(12, ge=1, le=65536)
    use_l2_norm: bool = True
    width: int = setting(1024, ge=1, le=65536)
    depth: int = setting(24, ge=1, le=1024)
    num_heads: int = setting(16, ge=1, le=1024)
    decoder_width: int = setting(1024, ge=1, le=65536)
    decoder_depth: int = setting(24, ge=1, le=1024)
    decoder_num_heads: int = setting(16, ge=1, le=1024)
    # Two-stage decoding through MaskGIT's VQGAN (the L-32/B-64/S-128 and One-D-Piece releases); False: pixels directly.
    two_stage: bool = True
    # The released encoder head's reshape without transpose (``is_legacy``, true for every two-stage release).
    legacy: bool = True
    pixel_codebook_size: int = setting(1024, ge=2, le=2**24)
    pixel_cnn: PixelCNNConfig = field(default_factory=PixelCNNConfig)

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        for name, w, h in (
            ("encoder", self.width, self.num_heads),
            ("decoder", self.decoder_width, self.decoder_num_heads),
        ):
            if w % h:
                raise ValueError(f"{name} width {w} is not divisible by its {h} heads")
        if self.two_stage and not self.legacy:
            raise ValueError("two_stage decoding exists only with the legacy heads (as in the releases)")
        if self.two_stage and self.pixel_cnn.downsample != self.patch_size:
            raise ValueError(
                f"the pixel decoder upsamples {self.pixel_cnn.downsample}x, the patches are {self.patch_size} px"
            )

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size

    def summary(self) -> str:
        """One line for listings (``restok info``)."""
        return f"{self.image_size:4d}px  {self.num_tokens:4d} tokens  {self.codebook_size} codes"


def _tiny(**kw: Any) -> TiTokConfig:
    """A small config for tests and examples (random weights; nothing released is this small)."""
    base = dict(
        image_size=32,
        patch_size=16,
        num_tokens=8,
        codebook_size=64,
        token_size=8,
        width=64,
        depth=2,
        num_heads=4,
        decoder_width=64,
        decoder_depth=2,
        decoder_num_heads=4,
        pixel_codebook_size=32,
        pixel_cnn=PixelCNNConfig(
            hidden_channels=32, channel_mult=(1, 1, 2, 2, 2), num_res_blocks=1, z_channels=16, num_groups=8
        ),
    )
    return TiTokConfig(**{**base, **kw})


def _sized(enc: str, dec: str, **kw: Any) -> TiTokConfig:
    """A config from the releases' size names."""
    (w, d, h), (dw, dd, dh) = VIT_SIZES[enc], VIT_SIZES[dec]
    return TiTokConfig(width=w, depth=d, num_heads=h, decoder_width=dw, decoder_depth=dd, decoder_num_heads=dh, **kw)


_VQ8K = dict(codebook_size=8192, token_size=64, use_l2_norm=False, two_stage=False, legacy=False)
TITOK_PRESETS: dict[str, TiTokConfig] = {
    "titok-l-32": _sized("large", "large", num_tokens=32),
    "titok-b-64": _sized("base", "base", num_tokens=64),
    "titok-s-128": _sized("small", "small", num_tokens=128),
    "titok-bl-64-vq8k": _sized("base", "large", num_tokens=64, **_VQ8K),
    "titok-bl-128-vq8k": _sized("base", "large", num_tokens=128, **_VQ8K),
    "titok-sl-256-vq8k": _sized("small", "large", num_tokens=256, **_VQ8K),
    "titok-tiny": _tiny(),
    # single-stage (pixels out of the ViT decoder): what restok trains
    "titok-tiny-single": _tiny(two_stage=False, legacy=False, patch_size=8),
}
ONE_D_PIECE_PRESETS: dict[str, TiTokConfig] = {
    "one-d-piece-l-256": _sized("large", "large", num_tokens=256),
    "one-d-piece-b-256": _sized("base", "base", num_tokens=256),
    "one-d-piece-s-256": _sized("small", "small", num_tokens=256),
    "one-d-piece-tiny": _tiny(num_tokens=16),
    "one-d-piece-tiny-single": _tiny(num_tokens=16, two_stage=False, legacy=False, patch_size=8),
}


# ------------------------------------------------------------------------------------------- the ViTs
class _ViT(nn.Module):
    """What the encoder and the decoder share: the class token, embeddings of the patch grid and of the latent
    positions, and the transformer between two LayerNorms."""

    def __init__(self, width: int, depth: int, heads: int, grid: int, num_tokens: int) -> None:
        super().__init__()
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid**2 + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList([Block(width, heads, TITOK_BLOCK) for _ in range(depth)])
        self.ln_post = nn.LayerNorm(width)
        self.width, self.grid = width, grid

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """ln_pre, then the blocks: (B, N, W) -> (B, N, W)."""
        x = self.ln_pre(x)
        for block in self.transformer:
            x = block(x)[0]  # (B, N, W)
        return x

    def with_class(self, x: torch.Tensor) -> torch.Tensor:
        """Prepend the class token to the patch tokens and add the grid's positions: (B, P, W) -> (B, P + 1, W)."""
        cls = self.class_embedding.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)  # (B, 1, W)
        return torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)


class TiTokEncoder(_ViT):
    """Patches + latent tokens -> (B, C, 1, L) pre-quantization latents."""

    def __init__(self, cfg: TiTokConfig) -> None:
        super().__init__(cfg.width, cfg.depth, cfg.num_heads, cfg.grid_size, cfg.num_tokens)
        self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size)
        self.conv_out = nn.Conv2d(cfg.width, cfg.token_size, 1)
        self.legacy, self.num_tokens, self.token_size = cfg.legacy, cfg.num_tokens, cfg.token_size

    def forward(self, images: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S), (L, W) -> (B, C, 1, L)."""
        B = images.shape[0]
        x = self.with_class(self.patch_embed(images).flatten(2).transpose(1, 2))  # (B, P + 1, W)
        lat = latent_tokens.to(x.dtype).unsqueeze(0).expand(B, -1, -1) + self.latent_token_positional_embedding.to(
            x.dtype
        )
        x = self.run(torch.cat([x, lat], dim=1))  # (B, P + 1 + L, W)
        lat = self.ln_post(x[:, 1 + self.grid**2 :])  # (B, L, W)
        if self.legacy:  # the released heads: a reshape, not a transpose (kept for their weights)
            lat = lat.reshape(B, self.width, self.num_tokens, 1)
        else:
            lat = lat.reshape(B, self.num_tokens, self.width, 1).permute(0, 2, 1, 3)  # (B, W, L, 1)
        return self.conv_out(lat).reshape(B, self.token_size, 1, self.num_tokens)  # (B, C, 1, L)


class TiTokDecoder(_ViT):
    """(B, k, C) codes + one mask token per patch -> per-patch VQGAN code logits (legacy) or pixels."""

    def __init__(self, cfg: TiTokConfig) -> None:
        super().__init__(cfg.decoder_width, cfg.decoder_depth, cfg.decoder_num_heads, cfg.grid_size, cfg.num_tokens)
        w, p = cfg.decoder_width, cfg.patch_size
        self.decoder_embed = nn.Linear(cfg.token_size, w)
        self.mask_token = nn.Parameter(w**-0.5 * torch.randn(1, 1, w))
        self.legacy, self.patch = cfg.legacy, p
        if cfg.legacy:
            self.ffn = nn.Sequential(nn.Conv2d(w, 2 * w, 1), nn.Tanh(), nn.Conv2d(2 * w, cfg.pixel_codebook_size, 1))
            self.conv_out = nn.Identity()
        else:
            self.ffn = nn.Sequential(nn.Conv2d(w, p * p * 3, 1))
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, k, C), k <= L -> (B, 1024, g, g) logits (legacy) or (B, 3, S, S) pixels."""
        B, k, _ = codes.shape
        x = self.decoder_embed(codes) + self.latent_token_positional_embedding[:k]  # (B, k, W)
        masks = self.with_class(self.mask_token.to(x.dtype).expand(B, self.grid**2, -1))  # (B, P + 1, W)
        x = self.ln_post(self.run(torch.cat([masks, x], dim=1))[:, 1 : 1 + self.grid**2])  # (B, P, W)
        x = x.transpose(1, 2).reshape(B, self.width, self.grid, self.grid)  # (B, W, g, g)
        x = self.ffn(x.contiguous())
        if not self.legacy:  # (B, p*p*3, g, g) -> (B, 3, g*p, g*p), channels ordered (p1, p2, c)
            p = self.patch
            x = (
                x.reshape(B, p, p, 3, self.grid, self.grid)
                .permute(0, 3, 4, 1, 5, 2)
                .reshape(B, 3, self.grid * p, self.grid * p)
            )
        return self.conv_out(x)


# ------------------------------------------------------------------------------------------- the tokenizers
class _Codebook(nn.Module):
    """MaskGIT VQGAN's codebook (``embedding``): what the two-stage decoder's code logits weight."""

    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n, dim)


class MaskGITTeacher(nn.Module):
    """MaskGIT's VQGAN, the teacher of TiTok's two-stage training (``maskgit-vqgan-imagenet-f16-256.bin``, keys
    ``encoder.*``, ``quantize.embedding.weight``, ``decoder.*``): its encoder's nearest codes are stage 1's proxy
    targets, and its codebook and decoder start the student's ``pixel_quantize`` / ``pixel_decoder`` (as
    1d-tokenizer's ``PretrainedTokenizer`` and ``create_model_and_loss_module`` use them). Frozen; images in [0, 1]."""

    def __init__(self, pixel_cnn: PixelCNNConfig, codebook_size: int) -> None:
        super().__init__()
        self.encoder = PixelEncoder(pixel_cnn)
        self.quantize = _Codebook(codebook_size, pixel_cnn.z_channels)
        self.decoder = PixelDecoder(pixel_cnn)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str, pixel_cnn: PixelCNNConfig, codebook_size: int) -> MaskGITTeacher:
        """The teacher read from ``path`` (``.bin``/``.pt`` with ``weights_only=True``, or ``.safetensors``) for a
        student whose pixel CNN and pixel codebook it must fit; a mismatch is named tensor by tensor."""
        from ..hub.files import read_state_dict

        state = read_state_dict(path)
        teacher = cls(pixel_cnn, codebook_size)
        own = teacher.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or wrong:
            parts = [f"{name} {keys[:3]}" for name, keys in (("missing", missing), ("unexpected", unexpected),
                                                             ("other shapes", wrong)) if keys]  # fmt: skip
            raise ValueError(
                f"{path} is not a MaskGIT VQGAN teacher for this TiTok (its pixel CNN "
                f"{pixel_cnn.hidden_channels} wide, {codebook_size} codes of {pixel_cnn.z_channels}): "
                + "; ".join(parts)
            )
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            raise ValueError(f"{path} holds NaN or Inf")
        teacher.load_state_dict(state)
        return teacher

    @torch.no_grad()
    def proxy_codes(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) in [0, 1] -> the teacher's nearest codes (B, g, g): ``argmin ||z - e||^2`` over its
        codebook, as MaskGIT's quantizer picks them (ties to the lowest index)."""
        z = self.encoder(images.float()).permute(0, 2, 3, 1)  # (B, g, g, Z)
        e = self.quantize.embedding.weight.float()  # (K, Z)
        d = z.pow(2).sum(-1, keepdim=True) + e.pow(2).sum(-1) - 2 * z @ e.t()  # (B, g, g, K)
        return d.argmin(-1)

    def start_pixel_decoder(self, student: nn.Module) -> None:
        """Copy the teacher's codebook and decoder into a two-stage student's ``pixel_quantize``/``pixel_decoder``."""
        student.pixel_quantize.load_state_dict(self.quantize.state_dict())
        student.pixel_decoder.load_state_dict(self.decoder.state_dict())


def _init_weights(module: nn.Module) -> None:
    """The releases' initialisation: truncated normal(0, 0.02) linear/conv/embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


_TITOK_KEYS = ("num_latent_tokens", "vit_enc_model_size", "vit_dec_model_size", "codebook_size", "token_size")


def _is_titok_config(cfg: Mapping[str, Any] | None) -> bool:
    """A release's nested config (``model.vq_model`` with TiTok's ViT sizes and latent tokens, no ResTok hierarchy)."""
    vq = ((cfg or {}).get("model") or {}).get("vq_model") if isinstance((cfg or {}).get("model"), Mapping) else None
    return (
        isinstance(vq, Mapping)
        and sum(k in vq for k in _TITOK_KEYS) >= 2  # several of TiTok's keys: one left out is named, not unrecognised
        and not any(
            k in vq for k in ("merge_tokens", "hierarchy_stages", "pixel_cnn", "drop_latent_tokens", "latent_hierarchy")
        )
    )


def _is_one_d_piece(cfg: Mapping[str, Any]) -> bool:
    """One-D-Piece's configs say so (``model.type``) or relax TiTok's length check (``strict_length_assertion``)."""
    model = cfg.get("model") or {}
    return model.get("type") == "one_d_piece" or model.get("vq_model", {}).get("strict_length_assertion") is False


def _titok_keys(keys: Any) -> bool:
    """TiTok's weight names: top-level latent tokens, a ViT encoder with a patch embedding."""
    return "latent_tokens" in keys and "encoder.patch_embed.weight" in keys


def config_from_release(cfg: Mapping[str, Any]) -> TiTokConfig:
    """Our config from a release's ``config.json`` (TiTok's and One-D-Piece's OmegaConf dump), every value read
    strictly (:class:`~restok.core.release.ReleaseConfig`: errors name the key path)."""
    root = ReleaseConfig(cfg)
    vq = root.section("model", required=True).section("vq_model", required=True)
    mode = vq.get("quantize_mode", str, "vq")
    if mode != "vq":
        raise ReleaseError(
            f"{vq.path}quantize_mode is {mode!r}: the VAE releases give continuous latents, not token ids, and are "
            "not supported (use a VQ release)"
        )
    crop = root.section("dataset").section("preprocessing").get("crop_size", int, 256)
    patch = vq.get("vit_enc_patch_size", int, 16)
    if vq.get("vit_dec_patch_size", int, 16) != patch:
        raise ReleaseError(f"{vq.path}vit_enc_patch_size and vit_dec_patch_size differ: not supported")
    w, d, h = vq.choice("vit_enc_model_size", VIT_SIZES)
    dw, dd, dh = vq.choice("vit_dec_model_size", VIT_SIZES)
    values = vq.read(
        {
            "num_tokens": ("num_latent_tokens", int, REQUIRED),
            "codebook_size": ("codebook_size", int, REQUIRED),
            "token_size": ("token_size", int, REQUIRED),
            "use_l2_norm": ("use_l2_norm", bool, False),
            "two_stage": ("finetune_decoder", bool, True),
            "legacy": ("is_legacy", bool, True),
        }
    )
    origins = {"image_size": "dataset.preprocessing.crop_size", "patch_size": f"{vq.path}vit_enc_patch_size"}
    return vq.build(
        TiTokConfig,
        origins,
        image_size=crop,
        patch_size=patch,
        width=w,
        depth=d,
        num_heads=h,
        decoder_width=dw,
        decoder_depth=dd,
        decoder_num_heads=dh,
        **values,
    )


def pixel_cnn_from_shapes(shapes: Mapping[str, tuple[int, ...]], prefix: str = "pixel_decoder.") -> PixelCNNConfig:
    """The VQGAN decoder's config read off its weights (levels, widths, blocks per level, latent channels); its
    GroupNorms have 32 groups in every release (not visible in the shapes)."""
    w = WeightShapes(shapes)
    levels = w.count(prefix + "up.", "up-sampling levels of the pixel decoder")
    widths = [w.dim(f"{prefix}up.{i}.block.0.conv2.weight", 4, 0) for i in range(levels)]
    blocks = w.count(prefix + "up.0.block.", "residual blocks of the pixel decoder's first level")
    hidden = widths[0]  # channel_mult[0] is 1 in every release
    if any(x % hidden for x in widths):
        raise ReleaseError(f"the pixel decoder's level widths {widths} are not multiples of the first", "weights")
    return w.build(
        PixelCNNConfig,
        hidden_channels=hidden,
        channel_mult=tuple(x // hidden for x in widths),
        num_res_blocks=blocks,
        z_channels=w.dim(prefix + "conv_in.weight", 4, 1),
        num_groups=math.gcd(32, hidden),
    )


def _heads(width: int) -> int:
    """The releases' heads for a ViT width (64 per head otherwise)."""
    return next((h for w, _, h in VIT_SIZES.values() if w == width), max(1, width // 64))


def config_from_weights(
    raw: Mapping[str, Any] | None, shapes: Mapping[str, tuple[int, ...]], where: str
) -> TiTokConfig:
    """The config of a release: from its ``config.json`` when there is one, else read off the weights (a bare
    ``tokenizer_titok_*.bin``; ``use_l2_norm`` then follows the releases: on for the two-stage ones, off for VQ-8k);
    the pixel decoder's sizes always come from the weights."""
    w = WeightShapes(shapes)
    two_stage = "pixel_decoder.conv_in.weight" in shapes
    pixel = pixel_cnn_from_shapes(shapes) if two_stage else PixelCNNConfig()
    pixel_codes = w.dim("pixel_quantize.embedding.weight", 2, 0) if two_stage else 1024
    if raw is not None:
        cfg = config_from_release(raw)
        return dataclasses.replace(cfg, pixel_cnn=pixel, pixel_codebook_size=pixel_codes) if two_stage else cfg
    L, width = w.dims("latent_tokens", 2)
    patch = w.dims("encoder.patch_embed.weight", 4)[-1]
    positions = w.dim("encoder.positional_embedding", 2, 0) - 1
    grid = math.isqrt(positions)
    if grid < 1 or grid * grid != positions:
        raise ReleaseError(
            f"tensor 'encoder.positional_embedding' holds {positions} + 1 positions: not a square grid", "weights"
        )
    codes, token = w.dims("quantize.embedding.weight", 2)
    dw = w.dim("decoder.decoder_embed.weight", 2, 0)
    return w.build(
        TiTokConfig,
        image_size=grid * patch,
        patch_size=patch,
        num_tokens=L,
        codebook_size=codes,
        token_size=token,
        use_l2_norm=two_stage,
        width=width,
        depth=w.count("encoder.transformer.", "encoder blocks"),
        num_heads=_heads(width),
        decoder_width=dw,
        decoder_depth=w.count("decoder.transformer.", "decoder blocks"),
        decoder_num_heads=_heads(dw),
        two_stage=two_stage,
        legacy="decoder.conv_out.weight" not in shapes,
        pixel_codebook_size=pixel_codes,
        pixel_cnn=pixel,
    )


def _titok_matches(cfg: Mapping[str, Any] | None, keys: Any) -> bool:
    if cfg and cfg.get("format"):
        return False
    return (_is_titok_config(cfg) and not _is_one_d_piece(cfg or {})) or (cfg is None and _titok_keys(keys))


def _one_d_piece_matches(cfg: Mapping[str, Any] | None, keys: Any) -> bool:
    return bool(cfg) and not cfg.get("format") and _is_titok_config(cfg) and _is_one_d_piece(cfg)


def _two_stage_refusal(config: TiTokConfig, run: Any) -> str | None:
    """Why a config does not train under a run's settings (None: it trains). A two-stage TiTok trains in TiTok's two
    stages: stage 1 with the MaskGIT VQGAN teacher's proxy codes (``loss.proxy_teacher``), stage 2 fine-tuning the
    decoder of a stage-1 result (``init_from``)."""
    teacher = getattr(getattr(run, "loss", None), "proxy_teacher", None)
    if not config.two_stage:
        return "loss.proxy_teacher trains a two-stage TiTok's stage 1; this config is single-stage" if teacher else None
    if teacher or getattr(run, "init_from", None):
        return None
    return (
        "this TiTok config decodes in two stages (two_stage=true): stage 1 trains on the proxy codes of a MaskGIT "
        "VQGAN teacher -- give its weights with loss.proxy_teacher=maskgit-vqgan-imagenet-f16-256.bin --, stage 2 "
        "fine-tunes the decoder of a stage-1 result (--init RUN/final); a single-stage TiTok trains without either: "
        "titok-tiny-single, titok-bl-64-vq8k, ... or model_overrides={two_stage: false, legacy: false}"
    )


def _two_stage_setup(model: TiTok, run: Any) -> MaskGITTeacher | None:
    """TiTok's stages: stage 1 starts the pixel codebook and decoder from the teacher and freezes them (only the
    encoder, quantizer and ViT decoder learn, on the teacher's codes: the teacher is returned for the objective);
    stage 2 freezes the encoder, the latent tokens and the quantizer and trains the decoders on pixels (1d-tokenizer's
    ``finetune_decoder``)."""
    if not model.config.two_stage:
        return None
    path = getattr(run.loss, "proxy_teacher", None)
    teacher = None
    if path:
        teacher = MaskGITTeacher.from_file(path, model.config.pixel_cnn, model.config.pixel_codebook_size)
        teacher.start_pixel_decoder(model)
        frozen = [model.pixel_quantize, model.pixel_decoder]
    else:
        frozen = [model.encoder, model.quantize]
        model.latent_tokens.requires_grad_(False)
    for part in frozen:
        part.requires_grad_(False)
    return teacher


@register_model
class TiTok(Tokenizer):
    """TiTok: images in [0, 1] <-> ``num_tokens`` flat 1-D tokens; only the full sequence decodes.

    Example:
        >>> tok = TiTok.from_pretrained("yucornetto/tokenizer_titok_l32_imagenet")  # or a local folder / file
        >>> ids = tok.encode(images)  # (B, 32)
        >>> recon = tok.decode(ids)
    """

    family = "titok"
    title = "TiTok"
    config_class = TiTokConfig
    presets = TITOK_PRESETS
    layouts = (Layout("release", _titok_matches, from_weights=config_from_weights),)
    ignored_prefixes = ()
    description = "a TiTok 1-D tokenizer (Yu et al. 2024): images <-> a fixed number of discrete tokens"
    keep_in_fp32_modules = ("quantize", "pixel_decoder", "pixel_quantize")
    training_hook = TrainingHook(
        blocks=(Block,),
        refuse=_two_stage_refusal,
        setup=_two_stage_setup,
        same_as_repository="the ViT encoder and decoder, the l2-normalised quantizer (beta 0.25), AdamW with a cosine "
        "schedule and warm-up, the EMA of the weights, random crops and flips",
        differs="restok trains the single-stage decoder (pixels out, two_stage=false) on restok's objective: MSE, "
        "LPIPS (TiTok: ConvNeXt-S logit MSE), the DINO-discriminator hinge GAN with LeCam (TiTok: a MaskBit-style "
        "discriminator), no alignment; two-stage: stage 1 is TiTok's (cross-entropy on the MaskGIT VQGAN "
        "teacher's codes + the quantizer loss, given loss.proxy_teacher), stage 2 restok's pixel objective on the "
        "decoders with the encoder and quantizer frozen (--init a stage-1 result)",
    )

    def __init__(self, config: TiTokConfig) -> None:
        super().__init__()
        if not isinstance(config, TiTokConfig):
            raise TypeError(f"config must be a TiTokConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = TiTokEncoder(config)
        self.decoder = TiTokDecoder(config)
        self.latent_tokens = nn.Parameter(config.width**-0.5 * torch.randn(config.num_tokens, config.width))
        self.apply(_init_weights)
        self.quantize = VectorQuantizer(config.codebook_size, config.token_size, use_l2_norm=config.use_l2_norm)
        if config.two_stage:
            self.pixel_quantize = _Codebook(config.pixel_codebook_size, config.pixel_cnn.z_channels)
            self.pixel_decoder = PixelDecoder(config.pixel_cnn)
        self.provenance = Provenance()
        self.pixel_dtype = torch.float32

    @classmethod
    def activation_shapes(cls, config: TiTokConfig) -> tuple[list[tuple[int, int, int, int]], int]:
        """The encoder and decoder ViTs over the patch grid, the class token and the latents."""
        c = config
        s = (c.image_size // c.patch_size) ** 2 + c.num_tokens + 1
        return [(s, c.width, c.num_heads, c.depth), (s, c.decoder_width, c.decoder_num_heads, c.decoder_depth)], 0

    def encode_ids(self, images: torch.Tensor) -> torch.Tensor:
        """Checked images (B, 3, S, S) in [0, 1] -> ids (B, L)."""
        z = self.encoder(images.to(self.latent_tokens.dtype), self.latent_tokens)  # (B, C, 1, L)
        return self.quantize(z[:, :, 0].transpose(1, 2)).ids  # (B, L)

    def decode_ids(self, ids: torch.Tensor, k: int, pixel_dtype: torch.dtype) -> torch.Tensor:
        """Checked ids (B, k) -> clamped float32 pixels (B, 3, S, S)."""
        codes = self.quantize.lookup(ids)[:, :k]  # (B, k, C)
        return self._decode_codes(codes, pixel_dtype).clamp(0.0, 1.0)

    def _decode_codes(self, codes: torch.Tensor, pixel_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Code vectors (B, k, C) -> unclamped float32 pixels (B, 3, S, S)."""
        return self._decode_with_logits(codes, pixel_dtype)[0]

    def _decode_with_logits(
        self, codes: torch.Tensor, pixel_dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Code vectors (B, k, C) -> unclamped float32 pixels (B, 3, S, S) and, two-stage, the decoder's logits over
        the pixel codebook (B, K, g, g)."""
        out = self.decoder(codes.to(self.decoder.ln_pre.weight.dtype))  # logits (B, 1024, g, g) or pixels (B, 3, S, S)
        if not self.config.two_stage:
            return out.float(), None
        probs = out.float().softmax(1)  # (B, 1024, g, g)
        feats = torch.einsum("nchw,cd->ndhw", probs, self.pixel_quantize.embedding.weight.float())  # (B, Z, g, g)
        return self._pixel_decode(feats, pixel_dtype).float(), out

    def forward(
        self,
        images: torch.Tensor,
        kept_tokens: int | Sequence[int] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> TokenizerOutput:
        """The training forward: the unclamped reconstruction from each sample's kept prefix (One-D-Piece's tail-token
        drop cuts the codes after the quantizer, as its repository does), the ids and the quantizer's terms."""
        images = self._check_images(images)  # (B, 3, S, S)
        B = images.shape[0]
        z = self.encoder(images.to(self.latent_tokens.dtype), self.latent_tokens)  # (B, C, 1, L)
        q = self.quantize(z[:, :, 0].transpose(1, 2))  # codes (B, L, C), ids (B, L)
        keep = self._kept(kept_tokens, B, generator)  # (B,)
        lengths = sorted({int(k) for k in keep.tolist()})
        if len(lengths) == 1:
            recon, logits = self._decode_with_logits(q.codes[:, : lengths[0]])  # (B, 3, S, S), (B, K, g, g)
        else:  # a prefix decodes by itself: one decoder pass per length, put back in the batch's order
            parts = {k: torch.nonzero(keep == k).squeeze(1).to(images.device) for k in lengths}
            outs = [self._decode_with_logits(q.codes[idx, :k]) for k, idx in parts.items()]
            order = torch.cat(list(parts.values())).argsort()
            recon = torch.cat([o[0] for o in outs])[order]
            logits = torch.cat([o[1] for o in outs])[order] if self.config.two_stage else None
        return TokenizerOutput.quantized(recon, q, keep.to(images.device), code_logits=logits)


@register_model
class OneDPiece(TiTok):
    """One-D-Piece: a TiTok whose every prefix of ``k`` tokens decodes (tail-token drop); the budgets it reports are
    the powers of two up to ``num_tokens``, and any ``k`` from 1 to ``num_tokens`` decodes."""

    family = "one-d-piece"
    title = "One-D-Piece"
    nested = True
    presets = ONE_D_PIECE_PRESETS
    layouts = (Layout("release", _one_d_piece_matches, from_weights=config_from_weights),)
    description = "a One-D-Piece 1-D tokenizer (Miwa et al. 2025): TiTok with tail-token drop, every prefix decodes"

    @property
    def prefix_lengths(self) -> tuple[int, ...]:
        """Powers of two up to L, and L."""
        L = self.num_tokens
        return tuple(sorted({2**i for i in range(L.bit_length()) if 2**i <= L} | {L}))

    def decodable(self, k: int) -> bool:
        """Any ``1 <= k <= L``."""
        return 1 <= k <= self.num_tokens

    def describe_lengths(self) -> str:
        """The decodable lengths in words."""
        return f"any length from 1 to {self.num_tokens} decodes"

    def sample_kept_tokens(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Tail-token drop (One-D-Piece's training): one length drawn uniformly from 1..L for the whole batch."""
        k = torch.randint(1, self.num_tokens + 1, (1,), generator=generator)
        return k.expand(batch).clone()
