"""MaskGIT-style CNN pixel encoder and decoder (App. A.1), with the official state-dict names.

Each module has two forward paths, chosen by one switch (:func:`use_fast_convs`, as timm's ``use_fused_attn``):

* ``forward_reference``: the official computation written plainly -- conv, GroupNorm, SiLU, ``h + nin_shortcut(h)``
  when channels change, 2x2 average pooling, nearest upsampling then a 3x3 conv;
* the fast path (default): the same function with less arithmetic.

The convolutions are most of the tokenizer's arithmetic, so the fast path uses three exact rewrites of the
official computation (outputs move only by float rounding, about 1e-6 relative; the tests compare the two paths):

- nearest 2x upsampling then a 3x3 conv is one stride-2 transposed conv whose 4x4 taps are sums of the 3x3
  taps (each output pixel sees only 2x2 distinct inputs): 16 multiply-adds per output pixel instead of 36;
- a 3x3 conv then 2x2 average pooling is one stride-2 4x4 conv: 16 instead of 36 per pooled pixel, and the
  full-resolution conv output is never materialised;
- the official block's ``h + nin_shortcut(h)`` is ``(I + W) h``: the 1x1 conv folds into the conv before it.

Activations run channels-last (oneDNN's fast layout on CPU). In forwards that need no weight gradients
(inference, evaluation, sampling) the rewritten weights are built once and reused until a source weight
changes (tracked by its in-place version counter and storage; writes through ``.data`` bypass that counter,
so call :func:`clear_prepared_weights` after such writes, or to free them: 0.22 GiB for the released 54 M
parameter CNNs in float32). Training forwards rebuild them differentiably.

Axes: B batch, C channels, H/W spatial.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.fields import Config, check_field_types, setting

__all__ = [
    "PixelCNNConfig",
    "PixelEncoder",
    "PixelDecoder",
    "clear_prepared_weights",
    "use_fast_convs",
    "set_fast_convs",
]


@dataclass(frozen=True)
class PixelCNNConfig(Config):
    """MaskGIT-style CNN pixel encoder/decoder (App. A.1); the official one is 128 wide and 16x."""

    hidden_channels: int = setting(128, ge=1, le=8192)  # width of the first stage
    # per-stage width multipliers; len(channel_mult) - 1 downsamplings
    channel_mult: tuple[int, ...] = setting((1, 1, 2, 2, 4), ge=1, le=64)
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


# The switch between the two paths; RESTOK_FAST_CONVS=0 in the environment starts with the reference path.
_FAST_CONVS = os.environ.get("RESTOK_FAST_CONVS", "1") != "0"


def use_fast_convs() -> bool:
    """Whether the pixel CNN runs its arithmetic-saving rewrites (default) rather than the plain reference path."""
    return _FAST_CONVS


def set_fast_convs(enabled: bool) -> None:
    """Choose the fast (True) or reference (False) path of every pixel CNN."""
    global _FAST_CONVS
    _FAST_CONVS = bool(enabled)


# Per-axis maps (rows: the 4 new taps, columns: the 3 old ones). Upsampling: output 2i reads inputs (i-1, i)
# with taps (K0, K1+K2), output 2i+1 reads (i, i+1) with (K0+K1, K2); as a padding-1 transposed conv that is
# the kernel [K2, K1+K2, K0+K1, K0]. Pooling: the mean of outputs 2i and 2i+1 reads inputs 2i-1 .. 2i+2 with
# taps (K0, K0+K1, K1+K2, K2) / 2.
_UPSAMPLE_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))
_POOL_TAPS = ((0.5, 0.0, 0.0), (0.5, 0.5, 0.0), (0.0, 0.5, 0.5), (0.0, 0.0, 0.5))
_CACHE_ATTR = "_prepared_weights"


def _fold_taps(w: torch.Tensor, table: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """(O, I, 3, 3) kernel -> (O, I, 4, 4): the same per-axis tap map applied to rows and columns."""
    t = torch.tensor(table, dtype=w.dtype, device=w.device)
    return torch.einsum("ka,oiab,lb->oikl", t, w, t)


def _prepared(
    owner: nn.Module, key: str, sources: tuple[torch.Tensor, ...], make: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """``make()`` in channels-last layout, cached on ``owner`` while no gradient is needed and no source changed."""
    if (torch.is_grad_enabled() and any(s.requires_grad for s in sources)) or torch.compiler.is_compiling():
        return make()  # training: differentiable, rebuilt every call; compiled graphs fold it themselves
    # the autocast state is part of the key: a weight folded under bf16 autocast comes out bf16 and must not be
    # reused by a float32 call (the float32 pixel decoder after a bf16 one)
    dev = sources[0].device.type
    stamp = (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)) + tuple(
        (s.data_ptr(), s._version, s.dtype, s.device, s.shape) for s in sources
    )
    cache: dict[str, tuple[tuple, torch.Tensor]] = owner.__dict__.setdefault(_CACHE_ATTR, {})
    hit = cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    # Built outside inference mode: an inference tensor could not be saved for a later backward pass through
    # frozen weights (gradients flowing to the inputs of a frozen decoder).
    with torch.inference_mode(False), torch.no_grad():
        w = make().contiguous(memory_format=torch.channels_last)
    cache[key] = (stamp, w)
    return w


def clear_prepared_weights(model: nn.Module) -> None:
    """Drop every cached rewritten conv weight under ``model`` (needed only after writes through ``.data``)."""
    for m in model.modules():
        m.__dict__.pop(_CACHE_ATTR, None)


def _gn_silu(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """SiLU(GroupNorm(x)); in place on the fresh normalised tensor when autograd does not need it."""
    return F.silu(norm(x), inplace=not torch.is_grad_enabled())


def _conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` with the weight kept channels-last between no-grad calls (oneDNN reorders it otherwise)."""
    w = _prepared(conv, "w", (conv.weight,), lambda: conv.weight)
    return F.conv2d(x, w, conv.bias, conv.stride, conv.padding)


def _conv3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    """3x3 stride-1 conv with symmetric padding 1 (TF "same" padding for this case)."""
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class ResnetBlock(nn.Module):
    """GN-SiLU-conv twice; the skip is the identity, or a 1x1 conv when channels change.

    When channels change, the official (TiTok/MaskGIT) block applies the 1x1 ``nin_shortcut`` to its own
    output and returns ``h + nin_shortcut(h)``, discarding the input; we keep that for weight parity.
    """

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = _conv3(cin, cout, bias=False)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = _conv3(cout, cout, bias=False)
        self.nin_shortcut = nn.Conv2d(cout, cout, 1, bias=False) if cin != cout else None

    def _conv2_weight(self, pool: bool) -> torch.Tensor:
        """conv2's kernel with the nin shortcut folded in and, when ``pool``, the 2x2 mean (module docstring)."""
        sources = (self.conv2.weight,) + (() if self.nin_shortcut is None else (self.nin_shortcut.weight,))

        def make() -> torch.Tensor:
            w = self.conv2.weight  # (O, O, 3, 3)
            if self.nin_shortcut is not None:
                w = w + torch.einsum("oc,cikl->oikl", self.nin_shortcut.weight[:, :, 0, 0], w)  # (I + W) K
            return _fold_taps(w, _POOL_TAPS) if pool else w

        return _prepared(self, "conv2_pool" if pool else "conv2", sources, make)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The official block: (B, Cin, H, W) -> (B, Cout, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))  # (B, Cout, H, W)
        h = self.conv2(F.silu(self.norm2(h)))  # (B, Cout, H, W)
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(h))  # the official shortcut quirk

    def forward(self, x: torch.Tensor, pool: bool = False) -> torch.Tensor:
        """(B, Cin, H, W) -> (B, Cout, H, W), or its 2x2 average pool (B, Cout, H/2, W/2) when ``pool``."""
        if not _FAST_CONVS:
            h = self.forward_reference(x)  # (B, Cout, H, W)
            return F.avg_pool2d(h, 2, 2) if pool else h  # (B, Cout, H/2, W/2) or (B, Cout, H, W)
        h = _conv(self.conv1, _gn_silu(self.norm1, x))  # (B, Cout, H, W)
        # stride 2 when the 2x2 mean is folded in: (B, Cout, H/2, W/2), else (B, Cout, H, W)
        out = F.conv2d(_gn_silu(self.norm2, h), self._conv2_weight(pool), stride=2 if pool else 1, padding=1)
        if self.nin_shortcut is not None:
            return out  # the shortcut is folded into the conv
        skip = F.avg_pool2d(x, 2, 2) if pool else x  # the input at the output's size
        return out.add_(skip) if not torch.is_grad_enabled() else out + skip  # (B, Cout, H/2 or H, W/2 or W)


class _Stage(nn.Module):
    """``num_res_blocks`` ResnetBlocks (official attribute name ``block``)."""

    def __init__(self, cin: int, cout: int, n: int, groups: int) -> None:
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups) for i in range(n)])


class _DownStage(_Stage):
    """Residual blocks, then 2x average pooling unless it is the last stage."""

    def __init__(self, cin: int, cout: int, n: int, groups: int, downsample: bool) -> None:
        super().__init__(cin, cout, n, groups)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, H, W) -> (B, Cout, H/2, W/2) (or H, W for the last stage)."""
        last = len(self.block) - 1
        for i, blk in enumerate(self.block):
            x = blk(x, pool=self.downsample and i == last)  # the pooling folds into the last conv
        return x


class _UpStage(_Stage):
    """Residual blocks, then nearest 2x upsampling and a 3x3 conv unless it is stage 0."""

    def __init__(self, cin: int, cout: int, n: int, groups: int, upsample: bool) -> None:
        super().__init__(cin, cout, n, groups)
        self.upsample_conv = _conv3(cout, cout) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, H, W) -> (B, Cout, 2H, 2W) (or H, W for stage 0)."""
        for blk in self.block:
            x = blk(x)
        conv = self.upsample_conv
        if conv is None:
            return x
        # conv(nearest_upsample(x)) as one transposed conv; its weight layout is (Cin, Cout, kH, kW).
        w = _prepared(
            conv, "up", (conv.weight,), lambda: _fold_taps(conv.weight, _UPSAMPLE_TAPS).transpose(0, 1)
        )  # (Cin, Cout, 4, 4)
        return F.conv_transpose2d(x, w, conv.bias, stride=2, padding=1)  # (B, Cout, 2H, 2W)


class PixelEncoder(nn.Module):
    """Image (B, 3, H, W), ImageNet-normalised -> features (B, z_channels, H/f, W/f)."""

    def __init__(self, cfg: PixelCNNConfig) -> None:
        super().__init__()
        hc, mult, g = cfg.hidden_channels, cfg.channel_mult, cfg.num_groups
        self.conv_in = _conv3(3, hc, bias=False)
        in_mult = (1,) + mult
        self.down = nn.ModuleList(
            [
                _DownStage(hc * in_mult[i], hc * mult[i], cfg.num_res_blocks, g, downsample=i != len(mult) - 1)
                for i in range(len(mult))
            ]
        )
        mid = hc * mult[-1]
        self.mid = nn.ModuleList([ResnetBlock(mid, mid, g) for _ in range(cfg.num_res_blocks)])
        self.norm_out = nn.GroupNorm(g, mid, eps=1e-6)
        self.conv_out = nn.Conv2d(mid, cfg.z_channels, 1)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The official encoder, written plainly: (B, 3, H, W) -> (B, Z, H/f, W/f)."""
        x = self.conv_in(x)  # (B, hc, H, W)
        for stage in self.down:
            for b in stage.block:
                x = b.forward_reference(x)
            if stage.downsample:
                x = F.avg_pool2d(x, 2, 2)  # (B, C_i, H_i / 2, W_i / 2)
        for b in self.mid:
            x = b.forward_reference(x)
        return self.conv_out(F.silu(self.norm_out(x)))  # (B, Z, H/f, W/f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, Z, H/f, W/f)."""
        if not _FAST_CONVS:
            return self.forward_reference(x)
        x = _conv(self.conv_in, x.contiguous(memory_format=torch.channels_last))  # (B, hc, H, W)
        for stage in self.down:
            x = stage(x)  # (B, C_i, H_i, W_i)
        for blk in self.mid:
            x = blk(x)
        return _conv(self.conv_out, _gn_silu(self.norm_out, x)).contiguous()  # (B, Z, H/f, W/f)


class PixelDecoder(nn.Module):
    """Features (B, z_channels, h, w) -> image (B, 3, h*f, w*f), trained to emit [0, 1] pixels."""

    def __init__(self, cfg: PixelCNNConfig) -> None:
        super().__init__()
        hc, mult, g, n = cfg.hidden_channels, cfg.channel_mult, cfg.num_groups, len(cfg.channel_mult)
        top = hc * mult[-1]
        self.conv_in = _conv3(cfg.z_channels, top)
        self.mid = nn.ModuleList([ResnetBlock(top, top, g) for _ in range(cfg.num_res_blocks)])
        # up[i] holds stage i; they run from the coarsest (n-1) down to 0, as in the official module.
        self.up = nn.ModuleList(
            [
                _UpStage(hc * mult[min(i + 1, n - 1)], hc * mult[i], cfg.num_res_blocks, g, upsample=i != 0)
                for i in range(n)
            ]
        )
        self.norm_out = nn.GroupNorm(g, hc * mult[0], eps=1e-6)
        self.conv_out = _conv3(hc * mult[0], 3)

    def forward_reference(self, z: torch.Tensor) -> torch.Tensor:
        """The official decoder, written plainly: (B, Z, h, w) -> (B, 3, h*f, w*f)."""
        x = self.conv_in(z)  # (B, top, h, w)
        for b in self.mid:
            x = b.forward_reference(x)
        for stage in reversed(self.up):
            for b in stage.block:
                x = b.forward_reference(x)
            if stage.upsample_conv is not None:
                x = stage.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C_i, 2H_i, 2W_i)
        return self.conv_out(F.silu(self.norm_out(x)))  # (B, 3, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Z, h, w) -> (B, 3, h*f, w*f)."""
        if not _FAST_CONVS:
            return self.forward_reference(x)
        x = _conv(self.conv_in, x.contiguous(memory_format=torch.channels_last))  # (B, top, h, w)
        for blk in self.mid:
            x = blk(x)
        for stage in reversed(self.up):
            x = stage(x)  # (B, C_i, ...) upsampled
        return _conv(self.conv_out, _gn_silu(self.norm_out, x)).contiguous()  # (B, 3, H, W)
