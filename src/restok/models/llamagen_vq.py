"""LlamaGen's VQ tokenizers (Sun et al. 2024, "Autoregressive Model Beats Diffusion"): the 2-D grid tokenizer whose
16x16 codes the paper's LlamaGen rows of Table 1 sample (VQ-16; VQ-8 is the same class with one downsampling less).

A VQGAN: a CNN encoder (``conv_blocks`` of residual blocks, self-attention at the lowest resolution, stride-2
convolutions after zero-padding right and bottom by one pixel), a 1x1 ``quant_conv`` to 8-dimensional codes, an
l2-normalised codebook of 16,384 entries, a 1x1 ``post_quant_conv`` and a CNN decoder with one residual block more
per level than the encoder. Tokens are the grid cells in raster order (row by row): a prefix of them is the top rows
of the image, not a coarse version of it, so only the full sequence decodes (``nested`` False; the budgets it
reports are its one length). Images are taken in [0, 1] and mapped to [-1, 1], as LlamaGen's data pipeline does.

Written from the computation of github.com/FoundationVision/LlamaGen ``tokenizer/tokenizer_image/vq_model.py``, with
its state-dict names (the released ``vq_ds16_c2i.pt`` holds them under ``"model"``; the ``quantize.codebook_used``
buffer, a training-time usage log, is dropped on load). ``tests/parity/make_family_fixtures.py`` runs that code.

Axes: B batch, S image side, g grid side (S / 2^(levels-1)), L = g*g tokens, D code size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.fields import Config, check_field_types, setting
from ..core.registry import Layout, register_model
from ..core.release import ReleaseConfig, ReleaseError, WeightShapes
from ..hub.provenance import Provenance
from .layers.quantizer import VectorQuantizer
from .tokenizer import Tokenizer
from .training import TokenizerOutput, TrainingHook

__all__ = ["LlamaGenVQConfig", "LlamaGenVQ", "LLAMAGEN_VQ_PRESETS"]


@dataclass(frozen=True)
class LlamaGenVQConfig(Config):
    """A LlamaGen VQGAN. Defaults are VQ-16 at 256 px (16x16 = 256 tokens)."""

    config_name = "LlamaGenVQ"

    image_size: int = setting(256, ge=1, le=8192)
    codebook_size: int = setting(16384, ge=2, le=2**24)
    codebook_embed_dim: int = setting(8, ge=1, le=65536)
    codebook_l2_norm: bool = True
    ch: int = setting(128, ge=1, le=8192)  # width of the first level
    ch_mult: tuple[int, ...] = setting((1, 1, 2, 2, 4), ge=1, le=64)  # per-level multipliers; len-1 downsamplings
    num_res_blocks: int = setting(2, ge=1, le=64)
    z_channels: int = setting(256, ge=1, le=65536)
    num_groups: int = setting(32, ge=1, le=8192)  # GroupNorm groups (32 in every release)

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.image_size % self.downsample:
            raise ValueError(f"image_size {self.image_size} is not divisible by the {self.downsample}x downsampling")
        for m in self.ch_mult:
            if (self.ch * m) % self.num_groups:
                raise ValueError(f"CNN width {self.ch * m} is not divisible by num_groups={self.num_groups}")

    @property
    def downsample(self) -> int:
        """Pixels per grid cell side."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def num_tokens(self) -> int:
        """L = g * g grid cells."""
        return (self.image_size // self.downsample) ** 2

    def summary(self) -> str:
        """One line for listings (``restok info``)."""
        g = self.image_size // self.downsample
        return f"{self.image_size:4d}px  {self.num_tokens:4d} tokens ({g}x{g} grid)  {self.codebook_size} codes"


LLAMAGEN_VQ_PRESETS: dict[str, LlamaGenVQConfig] = {
    "llamagen-vq-16": LlamaGenVQConfig(),
    "llamagen-vq-16-384": LlamaGenVQConfig(image_size=384),
    "llamagen-vq-8": LlamaGenVQConfig(ch_mult=(1, 2, 2, 4)),
    "llamagen-vq-tiny": LlamaGenVQConfig(
        image_size=32, codebook_size=64, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=32, num_groups=8
    ),
}


# ------------------------------------------------------------------------------------------- blocks
def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, ch, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus the input (through a 1x1 ``nin_shortcut`` when the width changes)."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, h, w) -> (B, cout, h, w)."""
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the grid cells, 1x1 convs for q, k, v and the output."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(ch, groups)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        B, C, H, W = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(B, C, H * W) for m in (self.q, self.k, self.v))  # (B, C, hw)
        attn = torch.softmax(torch.bmm(q.transpose(1, 2), k) * C**-0.5, dim=2)  # (B, hw_q, hw_k)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(B, C, H, W)
        return x + self.proj_out(out)


class _Resample(nn.Module):
    """Holds the resampling conv under the release's name (``downsample.conv`` / ``upsample.conv``)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv


class _Level(nn.Module):
    """One resolution: residual blocks (each followed by attention at the lowest level) and the resampling conv."""

    def __init__(self, widths: list[tuple[int, int]], groups: int, attn: bool, resample: str | None) -> None:
        super().__init__()
        self.res = nn.ModuleList([ResnetBlock(a, b, groups) for a, b in widths])
        self.attn = nn.ModuleList([AttnBlock(b, groups) for _, b in widths] if attn else [])
        ch = widths[-1][1]
        if resample == "down":  # stride 2 after padding right/bottom by one (LlamaGen's Downsample)
            self.downsample = _Resample(nn.Conv2d(ch, ch, 3, stride=2))
        elif resample == "up":
            self.upsample = _Resample(nn.Conv2d(ch, ch, 3, padding=1))
        self.resample = resample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The blocks, then the resampling."""
        for i, block in enumerate(self.res):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        if self.resample == "down":
            x = self.downsample.conv(F.pad(x, (0, 1, 0, 1)))
        elif self.resample == "up":
            x = self.upsample.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


def _mid(ch: int, groups: int) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(ch, ch, groups), AttnBlock(ch, groups), ResnetBlock(ch, ch, groups)])


class VQEncoder(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> (B, z, g, g)."""

    def __init__(self, c: LlamaGenVQConfig) -> None:
        super().__init__()
        n, ch = len(c.ch_mult), c.ch
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        levels, cin = [], ch
        for i, m in enumerate(c.ch_mult):
            widths = [(cin if j == 0 else ch * m, ch * m) for j in range(c.num_res_blocks)]
            levels.append(_Level(widths, c.num_groups, attn=i == n - 1, resample="down" if i < n - 1 else None))
            cin = ch * m
        self.conv_blocks = nn.ModuleList(levels)
        self.mid = _mid(cin, c.num_groups)
        self.norm_out = _norm(cin, c.num_groups)
        self.conv_out = nn.Conv2d(cin, c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode."""
        h = self.conv_in(x)
        for block in [*self.conv_blocks, *self.mid]:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQDecoder(nn.Module):
    """(B, z, g, g) -> (B, 3, S, S) in about [-1, 1]; levels from the lowest resolution up."""

    def __init__(self, c: LlamaGenVQConfig) -> None:
        super().__init__()
        n, ch = len(c.ch_mult), c.ch
        cin = ch * c.ch_mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, cin, 3, padding=1)
        self.mid = _mid(cin, c.num_groups)
        levels = []
        for i in reversed(range(n)):
            m = c.ch_mult[i]
            widths = [(cin if j == 0 else ch * m, ch * m) for j in range(c.num_res_blocks + 1)]
            levels.append(_Level(widths, c.num_groups, attn=i == n - 1, resample="up" if i > 0 else None))
            cin = ch * m
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = _norm(cin, c.num_groups)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode."""
        h = self.conv_in(z)
        for block in [*self.mid, *self.conv_blocks]:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# ------------------------------------------------------------------------------------------- layout
def _is_vq_keys(keys: Any) -> bool:
    """LlamaGen VQ weight names: ``quant_conv`` and an encoder of ``conv_blocks``."""
    return "quant_conv.weight" in keys and "encoder.conv_blocks.0.res.0.conv1.weight" in keys


# What a config given with release weights may say: the repository's ModelArgs, and the image size (the weights do
# not fix it; e.g. config={"image_size": 384} for the 24x24 grid).
_ARGS = {
    "codebook_size",
    "codebook_embed_dim",
    "codebook_l2_norm",
    "codebook_show_usage",
    "commit_loss_beta",
    "entropy_loss_ratio",
    "encoder_ch_mult",
    "decoder_ch_mult",
    "z_channels",
    "dropout_p",
    "image_size",
}


def _matches(cfg: Mapping[str, Any] | None, keys: Any) -> bool:
    if cfg and cfg.get("format"):
        return False
    if cfg and "codebook_embed_dim" in cfg and "encoder_ch_mult" in cfg:  # a ModelArgs dump beside the weights
        return True
    return (not cfg or set(cfg) <= _ARGS) and _is_vq_keys(keys)


def _numbered(shapes: Mapping[str, Any], prefix: str) -> int:
    """How many numbered children ``prefix.N.`` the weights have."""
    return len({k[len(prefix) :].split(".")[0] for k in shapes if k.startswith(prefix)})


def _image_size_hint(where: str) -> int:
    """The resolution a release file name states (``..._384.pt``), else 256 (the VQ releases' training size)."""
    found = re.findall(r"(?<![0-9])(256|384|512)(?![0-9])", where.rsplit("/", 1)[-1])
    return int(found[-1]) if found else 256


def config_from_weights(
    raw: Mapping[str, Any] | None, shapes: Mapping[str, tuple[int, ...]], where: str
) -> LlamaGenVQConfig:
    """The config read off the weights (the releases ship none): widths, levels, blocks, code size; the codebook is
    l2-normalised in every release, and the image size is 256 unless ``raw`` or the file name says otherwise (a
    ``raw`` value is read strictly: errors name its key)."""
    w = WeightShapes(shapes)
    ch = w.dim("encoder.conv_in.weight", 4, 0)
    levels = w.count("encoder.conv_blocks.", "encoder levels")
    widths = [w.dim(f"encoder.conv_blocks.{i}.res.0.conv1.weight", 4, 0) for i in range(levels)]
    if any(x % ch for x in widths):
        raise ReleaseError(f"the encoder's level widths {widths} are not multiples of its first width {ch}", "weights")
    mult = tuple(x // ch for x in widths)
    codes, dim = w.dims("quantize.embedding.weight", 2)
    z = w.dim("encoder.conv_out.weight", 4, 0)
    r = ReleaseConfig(raw or {})
    for key, found in (("encoder_ch_mult", mult), ("decoder_ch_mult", mult)):
        if r.ints(key, found) != found:
            raise ReleaseError(
                f"{key} is {list(r.ints(key))} but the weights' levels have {list(found)}: not supported"
            )
    for key, found in (("codebook_size", codes), ("codebook_embed_dim", dim), ("z_channels", z)):
        if r.get(key, int, found) != found:
            raise ReleaseError(f"{key} is {r.data[key]} but the weights have {found}")
    for key, kind in (("commit_loss_beta", float), ("entropy_loss_ratio", float), ("dropout_p", float)):
        r.get(key, kind, None)  # training settings: not used here, but a value of the wrong kind is still named
    r.get("codebook_show_usage", bool, None)
    values = r.read(
        {
            "image_size": ("image_size", int, _image_size_hint(where)),
            "codebook_l2_norm": ("codebook_l2_norm", bool, True),
        }
    )
    blocks = w.count("encoder.conv_blocks.0.res.", "residual blocks of the encoder's first level")
    return r.build(
        LlamaGenVQConfig,
        sized_by_weights=True,
        codebook_size=codes,
        codebook_embed_dim=dim,
        ch=ch,
        ch_mult=mult,
        num_res_blocks=blocks,
        z_channels=z,
        num_groups=math.gcd(32, ch),
        **values,
    )


# ------------------------------------------------------------------------------------------- the tokenizer
@register_model
class LlamaGenVQ(Tokenizer):
    """LlamaGen's VQGAN: images in [0, 1] <-> a g x g grid of codes in raster order (only the full grid decodes).

    Example:
        >>> tok = LlamaGenVQ.from_pretrained("vq_ds16_c2i.pt")  # a release file (weights_only), or a converted folder
        >>> ids = tok.encode(images)  # (B, 256) at 256 px
    """

    family = "llamagen-vq"
    title = "LlamaGen VQ"
    config_class = LlamaGenVQConfig
    presets = LLAMAGEN_VQ_PRESETS
    layouts = (Layout("release", _matches, from_weights=config_from_weights),)
    ignored_prefixes = ("quantize.codebook_used",)
    description = "LlamaGen's VQGAN (Sun et al. 2024): images <-> a 2-D grid of discrete tokens in raster order"
    keep_in_fp32_modules = ("quantize",)
    training_hook = TrainingHook(
        blocks=(ResnetBlock,),
        codes="grid",
        same_as_repository="the VQGAN encoder/decoder, the l2-normalised codebook with its commitment (beta 0.25) and "
        "codebook terms and optional entropy term, a perceptual (LPIPS) and a hinge GAN term starting after a delay",
        differs="the reconstruction term is measured on [0, 1] images (LlamaGen: [-1, 1], 4x the MSE); the "
        "discriminator is restok's DINO-feature heads with LeCam (LlamaGen: a PatchGAN with BatchNorm, no LeCam); "
        "restok's schedule and AdamW (LlamaGen: constant-lr Adam, betas 0.9/0.95, no weight decay) and random "
        "crops of 0.8-1 (LlamaGen: shorter side resized to 256-320, then a 256 crop)",
    )

    def __init__(self, config: LlamaGenVQConfig) -> None:
        super().__init__()
        if not isinstance(config, LlamaGenVQConfig):
            raise TypeError(f"config must be a LlamaGenVQConfig, got {type(config).__name__}")
        self.config = config
        self.encoder, self.decoder = VQEncoder(config), VQDecoder(config)
        self.quantize = VectorQuantizer(
            config.codebook_size, config.codebook_embed_dim, use_l2_norm=config.codebook_l2_norm
        )
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.codebook_embed_dim, config.z_channels, 1)
        self.provenance = Provenance()

    @classmethod
    def activation_shapes(cls, config: LlamaGenVQConfig) -> tuple[list[tuple[int, int, int, int]], int]:
        """No transformer; the encoder's and decoder's feature maps, level by level (about six tensors per residual
        block are kept for backward: two norms, two activations, two convolutions)."""
        side, total = config.image_size, 0
        for m in config.ch_mult:
            total += 6 * (config.num_res_blocks + 1) * config.ch * m * side * side
            side //= 2
        return [], 2 * total  # encoder and decoder

    def pixel_head(self, feats: torch.Tensor) -> torch.Tensor:
        """post_quant_conv + the CNN decoder: (B, D, g, g) codes -> (B, 3, S, S) in about [-1, 1]."""
        return self.decoder(self.post_quant_conv(feats))

    @property
    def grid_size(self) -> int:
        """g, cells per side."""
        return self.config.image_size // self.config.downsample

    def encode_ids(self, images: torch.Tensor) -> torch.Tensor:
        """Checked images (B, 3, S, S) in [0, 1] -> ids (B, g*g) in raster order."""
        h = self.quant_conv(self.encoder(images.to(self.quant_conv.weight.dtype) * 2 - 1))  # (B, D, g, g)
        return self.quantize(h.flatten(2).transpose(1, 2)).ids  # (B, L)

    def forward(
        self,
        images: torch.Tensor,
        kept_tokens: int | Sequence[int] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> TokenizerOutput:
        """The training forward (the repository's ``VQModel.forward``): the unclamped reconstruction of the whole
        grid in [0, 1] space, the ids and the quantizer's terms."""
        images = self._check_images(images)  # (B, 3, S, S)
        B, g = images.shape[0], self.grid_size
        keep = self._kept(kept_tokens, B, generator)  # (B,) every token: only the full grid decodes
        h = self.quant_conv(self.encoder(images.to(self.quant_conv.weight.dtype) * 2 - 1))  # (B, D, g, g)
        q = self.quantize(h.flatten(2).transpose(1, 2))  # codes (B, L, D)
        codes = q.codes.transpose(1, 2).reshape(B, -1, g, g)  # (B, D, g, g)
        recon = (self.pixel_head(codes.to(self.post_quant_conv.weight.dtype)).float() + 1) / 2  # (B, 3, S, S)
        return TokenizerOutput.quantized(recon, q, keep.to(images.device))

    def decode_ids(self, ids: torch.Tensor, k: int, pixel_dtype: torch.dtype) -> torch.Tensor:
        """Checked ids (B, L) -> clamped float32 pixels (B, 3, S, S)."""
        g = self.grid_size
        codes = self.quantize.lookup(ids).transpose(1, 2).reshape(ids.shape[0], -1, g, g)  # (B, D, g, g)
        return ((self._pixel_decode(codes, pixel_dtype).float() + 1) / 2).clamp(0.0, 1.0)
