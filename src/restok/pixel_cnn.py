"""MaskGIT-style CNN pixel encoder and decoder (App. A.1), with the official state-dict names.

Axes: B batch, C channels, H/W spatial.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PixelCNNConfig

__all__ = ["PixelEncoder", "PixelDecoder"]


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, H, W) -> (B, Cout, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))  # (B, Cout, H, W)
        h = self.conv2(F.silu(self.norm2(h)))  # (B, Cout, H, W)
        skip = x if self.nin_shortcut is None else self.nin_shortcut(h)
        return h + skip


class _Stage(nn.Module):
    """``num_res_blocks`` ResnetBlocks (official attribute name ``block``)."""

    def __init__(self, cin: int, cout: int, n: int, groups: int) -> None:
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups) for i in range(n)])

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the residual blocks in order."""
        for blk in self.block:
            x = blk(x)
        return x


class _DownStage(_Stage):
    """Residual blocks, then 2x average pooling unless it is the last stage."""

    def __init__(self, cin: int, cout: int, n: int, groups: int, downsample: bool) -> None:
        super().__init__(cin, cout, n, groups)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, H, W) -> (B, Cout, H/2, W/2) (or H, W for the last stage)."""
        x = self.run_blocks(x)
        return F.avg_pool2d(x, 2, 2) if self.downsample else x


class _UpStage(_Stage):
    """Residual blocks, then nearest 2x upsampling and a 3x3 conv unless it is stage 0."""

    def __init__(self, cin: int, cout: int, n: int, groups: int, upsample: bool) -> None:
        super().__init__(cin, cout, n, groups)
        self.upsample_conv = _conv3(cout, cout) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, H, W) -> (B, Cout, 2H, 2W) (or H, W for stage 0)."""
        x = self.run_blocks(x)
        if self.upsample_conv is not None:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, Z, H/f, W/f)."""
        x = self.conv_in(x)  # (B, hc, H, W)
        for stage in self.down:
            x = stage(x)  # (B, C_i, H_i, W_i)
        for blk in self.mid:
            x = blk(x)
        return self.conv_out(F.silu(self.norm_out(x)))  # (B, Z, H/f, W/f)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Z, h, w) -> (B, 3, h*f, w*f)."""
        x = self.conv_in(x)  # (B, top, h, w)
        for blk in self.mid:
            x = blk(x)
        for stage in reversed(self.up):
            x = stage(x)  # (B, C_i, ...) upsampled
        return self.conv_out(F.silu(self.norm_out(x)))  # (B, 3, H, W)
