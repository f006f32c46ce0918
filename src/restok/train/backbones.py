"""Frozen pretrained networks the tokenizer's training objective uses (Sec. 3.4, Eq. 4).

* VGG16 feature stack + LPIPS "lin" heads (perceptual loss),
* a DINO ViT (ViT-S/16 in the paper's recipe) as the discriminator's frozen feature extractor,
* the representation-alignment teacher (DINOv3 ViT-L/16 in the paper's recipe).

Each network is named by a *spec*: the real one (``vgg16``, ``dino-vits16``, ``dinov3-vitl16``) loads its
public weights from a local file when one is given and otherwise downloads them from the usual public URL
(or the Hugging Face Hub through ``timm`` for DINOv3); the small ones (``vgg16-tiny``, ``vit-tiny``) are for
CPU tests and toy runs and take seeded random weights unless a file is given. Both kinds go through the
same :func:`load_weights` path. Files are read with ``weights_only=True`` (or as safetensors).

Axes: B batch, C channels, N tokens, D width.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.layers.perceptual import (
    LPIPS,
    LPIPS_LIN_URL,
    VGG16_URL,
    WEIGHT_OPTIONS,
    BackboneError,
    VGG16Features,
    build_lpips,
    freeze,
    installed_lpips_heads,
    load_weights,
    seeded_init,
)
from ..models.layers.vit import DINO_BLOCK, Block
from ..runtime.network import offline

__all__ = [
    "VGG16Features",
    "LPIPS",
    "ViT",
    "FeatureTeacher",
    "load_weights",
    "build_lpips",
    "installed_lpips_heads",
    "build_dino_backbone",
    "build_feature_teacher",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackboneError",
    "WEIGHT_OPTIONS",
    "VGG16_URL",
    "LPIPS_LIN_URL",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DINO_VITS16_URL = "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
# timm names of the DINOv3 teachers (their pretrained configs point at the Hub repos timm/<name>); the paper
# aligns to ViT-L/16, the ViT-S/16 is a light stand-in for small runs.
DINOV3_TIMM_NAMES = {
    "dinov3-vitl16": "vit_large_patch16_dinov3.lvd1689m",
    "dinov3-vits16": "vit_small_patch16_dinov3.lvd1689m",
}


# ------------------------------------------------------------------------------------------- ViT (DINO style)
class ViT(nn.Module):
    """Plain ViT with a CLS token and learned positions, DINO/timm key names.

    ``forward`` returns the token sequence after each block (``readouts``) so that the discriminator can tap
    intermediate layers; :meth:`features` returns the final-norm CLS and patch tokens.
    """

    def __init__(self, img_size: int, patch: int, dim: int, depth: int, heads: int, approximate: str = "tanh") -> None:
        super().__init__()
        self.img_size, self.patch, self.dim, self.depth = img_size, patch, dim, depth
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch) ** 2 + 1, dim))
        spec = dataclasses.replace(DINO_BLOCK, gelu=approximate)
        self.blocks = nn.ModuleList([Block(dim, heads, spec) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, 1 + N, D) embedded tokens (positions interpolated if needed)."""
        x = self.patch_embed.proj(x)  # (B, D, h, w)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        pos = self.pos_embed
        n0 = pos.shape[1] - 1
        if h * w != n0:
            side = int(math.isqrt(n0))
            grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos

    def forward(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Token sequences (B, 1 + N, D) before block 0 (tap -1) and after each block index in ``taps``."""
        h = self._tokens(x)
        out = [h] if -1 in taps else []
        for i, blk in enumerate(self.blocks):
            h = blk(h)[0]
            if i in taps:
                out.append(h)
        return out

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final-norm CLS (B, D) and patch tokens (B, D, h, w)."""
        h = self.norm(self.forward(x, (self.depth - 1,))[-1])
        side = x.shape[-1] // self.patch
        patches = h[:, 1:].transpose(1, 2).reshape(x.shape[0], self.dim, x.shape[-2] // self.patch, side)
        return h[:, 0], patches


@dataclass(frozen=True)
class _ViTSpec:
    img_size: int
    patch: int
    dim: int
    depth: int
    heads: int
    url: str | None


VIT_SPECS = {
    "dino-vits16": _ViTSpec(224, 16, 384, 12, 6, DINO_VITS16_URL),
    "vit-tiny": _ViTSpec(32, 4, 64, 4, 2, None),
}


def build_dino_backbone(spec: str = "dino-vits16", weights: str | None = None) -> ViT:
    """The discriminator's frozen ViT: ``dino-vits16`` (public DINO weights) or ``vit-tiny`` (random)."""
    if spec not in VIT_SPECS:
        raise BackboneError(f"unknown discriminator backbone {spec!r}; choose one of {sorted(VIT_SPECS)}")
    s = VIT_SPECS[spec]
    vit = ViT(s.img_size, s.patch, s.dim, s.depth, s.heads)
    if s.url is None:
        seeded_init(vit)
    load_weights(vit, weights, s.url, f"discriminator backbone {spec}", strict=False)
    if spec == "dino-vits16":
        # The official DinoDisc zeroes the key part of every qkv bias on load (it cancels in softmax anyway).
        with torch.no_grad():
            for blk in vit.blocks:
                blk.attn.qkv.bias[s.dim : 2 * s.dim].zero_()
    return freeze(vit)


# ------------------------------------------------------------------------------------------- alignment teacher
class FeatureTeacher(nn.Module):
    """Frozen teacher for representation alignment: images in [0, 1] -> CLS (B, F), patches (B, F, h, w)."""

    def __init__(
        self, net: nn.Module, features: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], dim: int
    ) -> None:
        super().__init__()
        self.net = net
        self._features = features
        self.dim = dim
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ImageNet-normalise at native resolution (as the official code) and extract features."""
        cls, patches = self._features((images.float() - self.mean) / self.std)
        return cls.float(), patches.float()


def _timm_dinov3(spec: str, weights: str | None) -> FeatureTeacher:
    """A DINOv3 ViT through timm: pretrained from the Hub, or from a local weights file (offline)."""
    if weights is None and offline():
        raise BackboneError(
            f"alignment teacher {spec}: offline (HF_HUB_OFFLINE/RESTOK_OFFLINE is set), so its weights are not "
            "downloaded "
            "from the Hugging Face Hub; pass the local file instead: loss.alignment_weights=FILE"
        )
    try:
        import timm
    except Exception:  # noqa: BLE001 - ImportError, or torchvision failing inside timm's import
        raise BackboneError(
            f"the {spec!r} alignment teacher needs timm (pip install timm); "
            "or choose the small 'vit-tiny' teacher for toy runs"
        ) from None
    if weights is not None and not Path(weights).is_file():
        raise BackboneError(f"alignment teacher {spec}: weights file {weights} does not exist")
    # timm's built-in name, not "hf-hub:...": the latter fetches the config from the Hub even when a local file is
    # given, so it fails offline.
    overlay = {"file": str(weights)} if weights else None
    net = timm.create_model(
        DINOV3_TIMM_NAMES[spec], pretrained=True, dynamic_img_size=True, pretrained_cfg_overlay=overlay
    )
    patch = int(net.patch_embed.patch_size[0])

    def features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = net.forward_features(x)  # (B, 1 + 4 registers + N, F), after the final norm
        gh, gw = x.shape[-2] // patch, x.shape[-1] // patch
        patches = h[:, -gh * gw :].transpose(1, 2).reshape(x.shape[0], h.shape[-1], gh, gw)
        return h[:, 0], patches

    return freeze(FeatureTeacher(net, features, net.num_features))


def build_feature_teacher(spec: str = "dinov3-vitl16", weights: str | None = None) -> FeatureTeacher:
    """The alignment teacher: ``dinov3-vitl16`` / ``dinov3-vits16`` (timm), ``dino-vits16`` or ``vit-tiny`` (built
    in)."""
    if spec in DINOV3_TIMM_NAMES:
        return _timm_dinov3(spec, weights)
    vit = build_dino_backbone(spec, weights)
    return freeze(FeatureTeacher(vit, vit.features, vit.dim))
