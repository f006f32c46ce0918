"""The ResTok tokenizer (Sec. 3): CNN + hierarchical ViT encoder, l2 VQ, ViT + CNN decoder.

Axes: B batch, D ViT width, C code dim, L latent tokens, G = grid*grid image tokens, H/W pixels.
Structure (level sizes, merge layers, masks, RoPE ids) comes from :mod:`restok.core.hierarchy`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core import hierarchy as Hy
from ...core.registry import register_model
from ...hub.provenance import Provenance
from ..layers.pixel_cnn import PixelDecoder, PixelEncoder
from ..layers.quantizer import VectorQuantizer
from ..layers.rope import RopeTable, mrope_table
from ..layers.vit import RESTOK_BLOCK, Block
from ..tokenizer import Tokenizer, check_pixel_dtype
from ..training import TokenizerOutput, TrainingHook
from .config import RESTOK_PRESETS, ResTokConfig
from .official import RESTOK_LAYOUTS, TOKENIZER_TRAINING_ONLY

__all__ = ["ResTok", "ResTokEncoder", "ResTokDecoder", "ResTokOutput", "EncoderOutput"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _level_params(n: int, width: int) -> nn.ParameterList:
    """``n`` learnable (1, width) embeddings initialised as the official code: width^-0.5 * N(0, 1)."""
    return nn.ParameterList([nn.Parameter(width**-0.5 * torch.randn(1, width)) for _ in range(n)])


@dataclass
class EncoderOutput:
    """What the ViT encoder produces besides the latents."""

    latents: torch.Tensor  # (B, L, C) continuous pre-quantization latents
    image_tokens: list[torch.Tensor]  # per image-token level, coarse to fine, each (B, h*w, D)
    attention: list[torch.Tensor] = field(default_factory=list)  # per layer (B, N, N), when requested


class ResTokEncoder(nn.Module):
    """ViT encoder with residual latent initialisation (Alg. 1) and residual merging blocks (Alg. 2)."""

    def __init__(self, cfg: ResTokConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, L = cfg.width, cfg.num_tokens
        self.levels = Hy.latent_level_sizes(L)
        self.merge_at = Hy.merge_layers(cfg.depth, cfg.hierarchy_stages)
        g = cfg.grid_size
        self.final_grids = Hy.image_level_grids((g, g), cfg.hierarchy_stages, cfg.pooling_factor)
        self.patch_embed = nn.Conv2d(cfg.pixel_cnn.z_channels, D, 1)
        self.ln_pre = nn.LayerNorm(D, eps=1e-5)
        spec = dataclasses.replace(RESTOK_BLOCK, mlp_ratio=cfg.mlp_ratio)
        self.blocks = nn.ModuleList([Block(D, cfg.num_heads, spec) for _ in range(cfg.depth)])
        self.ln_post = nn.LayerNorm(D, eps=1e-5)
        self.level_embedding = _level_params(cfg.hierarchy_stages, D)
        self.latent_token_level_embedding = _level_params(len(self.levels), D)
        # One 1x1 projection to code space per latent level ("multi_quant" in the official config).
        self.conv_out = nn.ModuleList([nn.Conv2d(D, cfg.token_size, 1) for _ in self.levels])

    def stage_grids(self, stage: int) -> tuple[tuple[int, int], ...]:
        """Image-token grids (coarse to fine) present during stage ``stage`` (0 = before any merge)."""
        return self.final_grids[len(self.final_grids) - 1 - stage :]

    def _init_latents(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, D, g, g) features -> (B, L, D) initial latent tokens (Alg. 1)."""
        cfg = self.cfg
        if not cfg.latent_hierarchy:
            return F.interpolate(feats.flatten(2), size=cfg.num_tokens, mode="area").transpose(1, 2)  # (B, L, D)
        rest, parts = feats, []
        for h, w in Hy.latent_pool_grids(cfg.num_tokens):
            pooled = F.interpolate(rest, size=(h, w), mode="area")  # (B, D, h, w) average pooling
            parts.append(pooled.flatten(2).transpose(1, 2))  # (B, h*w, D) row-major
            if cfg.residual_latent_tokens:
                rest = rest - F.interpolate(
                    pooled, size=feats.shape[-2:], mode="nearest"
                )  # (B, D, g, g) residual (Alg. 1 line 5)
        return torch.cat(parts, dim=1)  # (B, L, D)

    def _legacy_head(self, h: torch.Tensor) -> torch.Tensor:
        """(B, L, D) normalised latents -> (B, L, C) codes, through the official TiTok "legacy" reshape.

        The official head reinterprets the contiguous (B, L, D) tensor as (B, D, L, 1) *without* a
        permute, so every code position mixes features of all latent tokens; the released weights were
        trained that way and we reproduce it exactly. Each latent level's positions get their own 1x1 conv.
        """
        B, L, D = h.shape
        s = h.reshape(B, D, L, 1)  # (B, D, L, 1) -- reinterpretation, not a transpose
        outs = [
            conv(s[:, :, a:b]) for conv, (a, b) in zip(self.conv_out, Hy.latent_level_bounds(L))
        ]  # (B, C, n_l, 1) per level
        z = torch.cat(outs, dim=2)  # (B, C, L, 1)
        return z.reshape(B, self.cfg.token_size, L).transpose(1, 2)  # (B, L, C)

    def forward(self, feats: torch.Tensor, return_attention: bool = False) -> EncoderOutput:
        """(B, Z, g, g) pixel-CNN features -> latents (B, L, C) and the image-token levels."""
        cfg, L = self.cfg, self.cfg.num_tokens
        x = self.patch_embed(feats)  # (B, D, g, g)
        latents = self._init_latents(x)  # (B, L, D)
        level_emb = torch.cat(
            [e.expand(n, -1) for e, n in zip(self.latent_token_level_embedding, self.levels)]
        )  # (L, D)
        latents = latents + level_emb.to(latents.dtype)  # (B, L, D)
        img = x.flatten(2).transpose(1, 2) + self.level_embedding[0].to(x.dtype)  # (B, G, D)
        x = self.ln_pre(torch.cat([img, latents], dim=1))  # (B, G + L, D)

        head_dim = cfg.width // cfg.num_heads
        attention: list[torch.Tensor] = []
        stage = 0
        grids = self.stage_grids(0)
        mask, rope = self._stage_tables(grids, head_dim, x.device)  # (N, N), (N, hd/2) x 2
        for i, blk in enumerate(self.blocks):
            merging = i in self.merge_at
            n_coarse = grids[0][0] * grids[0][1]
            x, w = blk(
                x,
                rope,
                mask,
                merge_tokens=n_coarse if merging else 0,
                residual_merge=cfg.residual_image_tokens,
                merge_factor=cfg.pooling_factor,
                return_weights=return_attention,
            )  # (B, N', D)
            if w is not None:
                attention.append(w)
            if merging:
                stage += 1
                grids = self.stage_grids(stage)
                n_new = grids[0][0] * grids[0][1]
                emb = self.level_embedding[stage].to(x.dtype)  # (1, D)
                x = torch.cat([x[:, :n_new] + emb, x[:, n_new:]], dim=1)  # new coarsest level gets its embedding
                mask, rope = self._stage_tables(grids, head_dim, x.device)  # (N', N'), (N', hd/2) x 2

        latents = self.ln_post(x[:, -L:])  # (B, L, D)
        sizes = [h * w for h, w in grids]
        image_tokens = list(torch.split(x[:, :-L], sizes, dim=1))  # coarse to fine
        return EncoderOutput(self._legacy_head(latents), image_tokens, attention)  # codes (B, L, C)

    def _stage_tables(
        self, grids: tuple[tuple[int, int], ...], head_dim: int, device: torch.device
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Boolean attention mask (Fig. 8a) and M-RoPE table (Fig. 9) for one encoder stage."""
        L = self.cfg.num_tokens
        mask = Hy.hierarchical_causal_mask(Hy.encoder_block_sizes(grids, L)).to(device)
        cos, sin = mrope_table(Hy.encoder_position_ids(grids, L), head_dim, self.cfg.rope_theta)
        return mask, (cos.to(device), sin.to(device))


class ResTokDecoder(nn.Module):
    """ViT decoder: latent codes (masked beyond the kept prefix) plus learnable image queries, no mask."""

    def __init__(self, cfg: ResTokConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.decoder_width
        self.levels = Hy.latent_level_sizes(cfg.num_tokens)
        self.bounds = Hy.latent_level_bounds(cfg.num_tokens)
        # 2-D RoPE of latents + queries, float32, made once and kept out of the buffers (``.to(bf16)`` cannot round it)
        g = cfg.grid_size
        self.rope = RopeTable(
            mrope_table(Hy.decoder_position_ids((g, g), cfg.num_tokens), D // cfg.decoder_num_heads, cfg.rope_theta)
        )
        self.latent_mask_token = nn.Parameter(D**-0.5 * torch.randn(1, 1, cfg.token_size))
        if cfg.learnable_dec_image_tokens:
            self.mask_token = nn.Parameter(D**-0.5 * torch.randn(1, 1, D))
        self.ln_pre = nn.LayerNorm(D, eps=1e-5)
        spec = dataclasses.replace(RESTOK_BLOCK, mlp_ratio=cfg.mlp_ratio)
        self.blocks = nn.ModuleList([Block(D, cfg.decoder_num_heads, spec) for _ in range(cfg.decoder_depth)])
        self.ln_post = nn.LayerNorm(D, eps=1e-5)
        self.ffn = nn.Conv2d(D, cfg.pixel_cnn.z_channels, 1)
        self.latent_token_level_embedding = _level_params(len(self.levels), D)
        self.decoder_embed = nn.ModuleList([nn.Linear(cfg.token_size, D) for _ in self.levels])
        if cfg.decoder_feature_dim:
            # Queries of the decoder's alignment branch (training only): they read the same latents as the
            # image queries, in a second copy of the batch, and are aligned to the teacher's patch features.
            self.feat_mask_token = nn.Parameter(D**-0.5 * torch.randn(1, 1, D))

    def forward(
        self,
        codes: torch.Tensor,
        keep: torch.Tensor | int,
        return_attention: bool = False,
        return_features: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """(B, L, C) codes, kept prefix length(s) -> (B, Z, g, g) features for the pixel decoder,
        per-layer attention (when asked) and the feature-query outputs (when asked).

        Positions at or beyond the kept length are replaced by the learned latent mask token (nested
        dropout, Sec. 3.4); the sequence keeps its length L. With ``return_features`` (needs
        ``decoder_feature_dim``) the feature-query branch runs too; its (B, D, g, g) output is taken before
        ``ln_post``, as in the official code.
        """
        cfg, L, g = self.cfg, self.cfg.num_tokens, self.cfg.grid_size
        B = codes.shape[0]
        pos = torch.arange(L, device=codes.device)  # (L,)
        keep_t = torch.as_tensor(keep, device=codes.device).reshape(-1, 1)  # (B or 1, 1)
        kept = (pos[None, :] < keep_t).unsqueeze(-1)  # (B or 1, L, 1)
        x = torch.where(kept, codes, self.latent_mask_token.to(codes.dtype))  # (B, L, C)
        x = torch.cat([emb(x[:, a:b]) for emb, (a, b) in zip(self.decoder_embed, self.bounds)], dim=1)  # (B, L, D)
        if cfg.learnable_dec_image_tokens:
            queries = self.mask_token.to(x.dtype).expand(B, g * g, -1)  # (B, G, D)
        else:
            queries = self._latent_queries(x)  # (B, G, D), from the latents before their level embedding
        level_emb = torch.cat(
            [e.expand(n, -1) for e, n in zip(self.latent_token_level_embedding, self.levels)]
        )  # (L, D)
        x = x + level_emb.to(x.dtype)  # (B, L, D)
        if return_features:
            feat_queries = self.feat_mask_token.to(x.dtype).expand(B, g * g, -1)  # (B, G, D)
            x = torch.cat([x, x])  # (2B, L, D): second half feeds the feature queries
            queries = torch.cat([queries, feat_queries])  # (2B, G, D)
        x = self.ln_pre(torch.cat([x, queries], dim=1))  # (B or 2B, L + G, D)

        rope = self.rope()  # (L + G, d/2) x 2, float32
        attention = []
        for blk in self.blocks:
            x, w = blk(x, rope, None, return_weights=return_attention)  # (B or 2B, L + G, D), (B, N, N) or None
            if w is not None:
                attention.append(w)
        x = x[:, L:]  # (B or 2B, G, D)
        features = None
        if return_features:
            x, f = x[:B], x[B:]
            features = f.transpose(1, 2).reshape(B, cfg.decoder_width, g, g)  # (B, D, g, g)
        x = self.ln_post(x)  # (B, G, D)
        x = x.transpose(1, 2).reshape(B, cfg.decoder_width, g, g)  # (B, D, g, g)
        return self.ffn(x), attention, features  # (B, Z, g, g)

    def _latent_queries(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) embedded latents -> (B, g*g, D) image queries: each level's pooled grid upsampled.

        The inverse of the encoder's residual latent init (Alg. 1): levels are nearest-upsampled to the image
        grid and summed when the latents are residual, averaged otherwise (official code, queries when
        ``learnable_dec_image_tokens`` is False).
        """
        cfg, g = self.cfg, self.cfg.grid_size
        B, _, D = x.shape
        total = None
        for (a, b), (h, w) in zip(Hy.latent_level_bounds(cfg.num_tokens), Hy.latent_pool_grids(cfg.num_tokens)):
            level = x[:, a:b].transpose(1, 2).reshape(B, D, h, w)  # row-major (h, w), as the encoder pooled it
            up = F.interpolate(level, size=(g, g), mode="nearest")  # (B, D, g, g)
            total = up if total is None else total + up
        if not cfg.residual_latent_tokens:
            total = total / len(self.levels)  # (B, D, g, g)
        return total.flatten(2).transpose(1, 2)  # (B, g*g, D)


# The training forward's result (one class for every family, :mod:`restok.models.training`); the old name stays.
ResTokOutput = TokenizerOutput


def _init_weights(module: nn.Module) -> None:
    """Official initialisation: truncated normal(0, 0.02) linear/conv weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@register_model
class ResTok(Tokenizer):
    """The ResTok tokenizer: images in [0, 1] <-> up to ``num_tokens`` discrete, nested, coarse-to-fine tokens.

    Loading, saving, ``.device``/``.dtype`` come from :class:`~restok.pretrained.PretrainedModel`. Cast to bf16/fp16
    with ``.to(dtype)``, the ViTs and the CNN encoder run in that precision while the quantizer and the CNN pixel
    decoder stay float32 (as the official code runs them); :attr:`pixel_dtype` chooses the pixel decoder's
    precision (float32 by default), and ``decode`` always returns float32 images.

    Example:
        >>> tok = ResTok.from_preset("restok-tiny").eval()
        >>> ids = tok.encode(torch.rand(2, 3, 32, 32))  # (2, 32) int64
        >>> images = tok.decode(ids[:, :8])  # coarse reconstruction from the first 8 tokens
    """

    family = "restok"
    title = "ResTok"
    nested = True
    config_class = ResTokConfig
    presets = RESTOK_PRESETS
    layouts = RESTOK_LAYOUTS
    ignored_prefixes = TOKENIZER_TRAINING_ONLY
    description = "a ResTok 1-D tokenizer: images <-> nested, coarse-to-fine discrete tokens"
    keep_in_fp32_modules = ("quantize", "pixel_decoder")
    training_hook = TrainingHook(
        blocks=(Block,),
        alignment=True,
        codes="hierarchical",
        same_as_repository="the official train_restok.py objective (Eq. 4): MSE, LPIPS, quantizer, DINO-discriminator "
        "hinge GAN with LeCam, DINOv3 alignment on encoder and decoder, nested dropout (Sec. 3.4), EMA",
        differs="nothing by design: parity of the objective is tested term by term (tests/train/test_losses.py)",
    )

    def __init__(self, config: ResTokConfig) -> None:
        super().__init__()
        if not isinstance(config, ResTokConfig):
            raise TypeError(f"config must be a ResTokConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = ResTokEncoder(config)
        self.decoder = ResTokDecoder(config)
        self.pixel_encoder = PixelEncoder(config.pixel_cnn)
        self.pixel_decoder = PixelDecoder(config.pixel_cnn)
        self.apply(_init_weights)
        self.quantize = VectorQuantizer(
            config.codebook_size,
            config.token_size,
            config.commitment_cost,
            config.entropy_loss_ratio,
            config.use_l2_norm,
        )
        # Alignment heads (training only), created after the official init as the official code does,
        # so they keep PyTorch's default Conv2d init; 1x1 convs without bias, official names.
        if config.encoder_feature_dim:
            self.vf_proj = nn.Conv2d(config.width, config.encoder_feature_dim, 1, bias=False)
        if config.decoder_feature_dim:
            self.vf_proj_dec = nn.Conv2d(config.decoder_width, config.decoder_feature_dim, 1, bias=False)
        self.register_buffer("imnet_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("imnet_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.provenance = Provenance()
        # Precision of the CNN pixel decoder when ``decode`` is not told otherwise: float32, as the official code
        # (bf16/fp16 run it under autocast, faster, pixels within that format's rounding).
        self.pixel_dtype: torch.dtype = torch.float32

    # -------------------------------------------------------------------------------- properties
    @property
    def prefix_lengths(self) -> tuple[int, ...]:
        """Allowed decode lengths, e.g. (4, 8, 16, 32, 64, 128)."""
        return self.config.prefix_lengths

    # -------------------------------------------------------------------------------- model
    def encode_latents(self, images: torch.Tensor, return_attention: bool = False) -> tuple[EncoderOutput, Any]:
        """(B, 3, H, W) in [0, 1] (any float dtype) -> encoder output and quantizer output (codes, ids, losses)."""
        x = (images.to(self.imnet_mean.dtype) - self.imnet_mean) / self.imnet_std  # (B, 3, H, W) ImageNet-normalised
        enc = self.encoder(self.pixel_encoder(x), return_attention=return_attention)  # latents (B, L, C)
        return enc, self.quantize(enc.latents)

    def encode_ids(self, images: torch.Tensor) -> torch.Tensor:
        """Checked images (B, 3, H, W) in [0, 1] -> ids (B, L); any prefix ``ids[:, :k]`` decodes."""
        return self.encode_latents(images)[1].ids

    def decode_codes(
        self,
        codes: torch.Tensor,
        keep: int | Sequence[int] | torch.Tensor | None = None,
        pixel_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """(B, L, C) code vectors, kept prefix length(s) -> (B, 3, H, W) unclamped float32 pixels.

        The pixel decoder runs in ``pixel_dtype`` (default :attr:`pixel_dtype`, float32 as in the official code, even
        under an outer autocast); bfloat16/float16 run it under autocast, with pixels that differ by that format's
        rounding (speed-ups in ``benchmarks/RESULTS.md``).
        """
        pixel_dtype = check_pixel_dtype(self.pixel_dtype if pixel_dtype is None else pixel_dtype)
        keep = self.num_tokens if keep is None else keep
        keep_t = self._check_keep(keep, codes.shape[0]).to(codes.device)
        feats, _, _ = self.decoder(codes.to(self.decoder.ln_pre.weight.dtype), keep_t)  # (B, Z, g, g)
        return self._pixel_decode(feats, pixel_dtype)  # (B, 3, H, W)

    def decode_ids(self, ids: torch.Tensor, k: int, pixel_dtype: torch.dtype) -> torch.Tensor:
        """Checked ids (B, k) on the model's device -> clamped pixels (B, 3, H, W), without validation (what
        :meth:`decode` runs after checking, and the compiled decode traces)."""
        codes = self.quantize.lookup(ids)  # (B, k, C)
        if k < self.num_tokens:  # the masked positions' values are never used
            pad = codes.new_zeros(codes.shape[0], self.num_tokens - k, codes.shape[2])  # (B, L - k, C)
            codes = torch.cat([codes, pad], dim=1)  # (B, L, C)
        feats, _, _ = self.decoder(codes.to(self.decoder.ln_pre.weight.dtype), k)  # (B, Z, g, g)
        return self._pixel_decode(feats, pixel_dtype).clamp(0.0, 1.0)  # (B, 3, H, W)

    def sample_kept_tokens(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample kept prefix lengths for nested token dropout (Sec. 3.4, App. A.2 Tab. 9)."""
        lengths = torch.tensor(self.prefix_lengths)
        if not self.config.nested_dropout:
            return lengths[-1:].expand(batch).clone()
        probs = torch.tensor(Hy.nested_dropout_probs(self.num_tokens, self.config.min_tokens, self.config.drop_prob))
        idx = torch.multinomial(probs, batch, replacement=True, generator=generator)
        return lengths[idx]

    def forward(
        self,
        images: torch.Tensor,
        kept_tokens: int | Sequence[int] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ResTokOutput:
        """Reconstruct images; in training mode, kept lengths are drawn by nested dropout unless given.

        Returns the unclamped reconstruction, the ids and the quantizer losses the training objective
        (Eq. 4) needs. In eval mode all tokens are kept unless ``kept_tokens`` says otherwise.
        """
        images = self._check_images(images)  # (B, 3, H, W)
        B = images.shape[0]
        enc, q = self.encode_latents(images)  # codes (B, L, C), ids (B, L)
        if kept_tokens is None:
            kept_tokens = self.sample_kept_tokens(B, generator) if self.training else self.num_tokens
        keep = self._check_keep(kept_tokens, B).to(images.device)  # (B,)
        cfg = self.config
        if not cfg.decoder_feature_dim:
            recon = self.decode_codes(q.codes, keep)  # (B, 3, H, W)
            dec_feats = None
        else:
            feats, _, query_out = self.decoder(q.codes, keep, return_features=True)  # (B, Z, g, g), (B, D, g, g)
            recon = self._pixel_decode(feats)  # (B, 3, H, W)
            dec_feats = self.vf_proj_dec(query_out)  # (B, F, g, g)
        enc_feats = None
        if cfg.encoder_feature_dim:
            coarse = enc.image_tokens[0].transpose(1, 2).unsqueeze(2)  # (B, D, 1, n) coarsest level
            enc_feats = self.vf_proj(coarse).mean(dim=(2, 3))  # (B, F)
        return TokenizerOutput.quantized(
            recon, q, keep, image_tokens=enc.image_tokens, encoder_features=enc_feats, decoder_features=dec_feats
        )

    @classmethod
    def activation_shapes(cls, config: ResTokConfig) -> tuple[list[tuple[int, int, int, int]], int]:
        """The encoder and decoder ViTs over the CNN's grid plus the latents (the CNNs are small beside them)."""
        s = (config.image_size // config.pixel_cnn.downsample) ** 2 + config.num_tokens
        c = config
        return [(s, c.width, c.num_heads, c.depth), (s, c.decoder_width, c.decoder_num_heads, c.decoder_depth)], 0

    def level_bounds(self) -> list[tuple[int, int]]:
        """The latent levels (1, 1, 2, 4, ... tokens): a coarse level can collapse alone."""
        return Hy.latent_level_bounds(self.num_tokens)

    @torch.no_grad()
    def preview_rows(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Reconstructions from each prefix length, decoded from the encoder's codes."""
        _, q = self.encode_latents(images)
        return [self.decode_codes(q.codes, k).clamp(0, 1) for k in self.prefix_lengths]

    def inference_config(self) -> ResTokConfig:
        """This model's config without the training-only alignment heads (what ``final/`` checkpoints hold)."""
        return self.config.replace(encoder_feature_dim=0, decoder_feature_dim=0)

    # -------------------------------------------------------------------------------- validation
    def _check_keep(self, keep: int | Sequence[int] | torch.Tensor, batch: int) -> torch.Tensor:
        """Validate kept prefix length(s) and return them as a (B,) int64 tensor."""
        t = torch.as_tensor(keep, dtype=torch.long).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(f"got {t.numel()} kept-token counts for a batch of {batch}")
        bad = sorted({int(v) for v in t.tolist()} - set(self.prefix_lengths))
        if bad:
            raise ValueError(
                f"kept-token count(s) {bad} not allowed; allowed prefix lengths are {list(self.prefix_lengths)}"
            )
        return t
