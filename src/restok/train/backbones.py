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

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

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
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
LPIPS_LIN_URL = "https://heibox.uni-heidelberg.de/f/607503859c864bc1b30b/?dl=1"  # taming-transformers vgg.pth
DINO_VITS16_URL = "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
# timm names of the DINOv3 teachers (their pretrained configs point at the Hub repos timm/<name>); the paper
# aligns to ViT-L/16, the ViT-S/16 is a light stand-in for small runs.
DINOV3_TIMM_NAMES = {
    "dinov3-vitl16": "vit_large_patch16_dinov3.lvd1689m",
    "dinov3-vits16": "vit_small_patch16_dinov3.lvd1689m",
}
RANDOM_INIT_SEED = 1234  # small spec networks without a file: the same random weights on every machine


class BackboneError(RuntimeError):
    """A pretrained network could not be built or its weights did not fit."""


# Which training setting takes a local file instead of each download (named in the offline error).
WEIGHT_OPTIONS = {
    "LPIPS VGG16 features": "loss.perceptual_vgg_weights=vgg16-397923af.pth",
    "LPIPS lin heads": "loss.perceptual_lin_weights=vgg.pth (or pip install lpips, whose wheel ships it)",
    "discriminator backbone dino-vits16": "loss.discriminator_weights=dino_deitsmall16_pretrain.pth "
                                          "(loss.alignment_weights=... when DINO is the alignment teacher)",
}


def load_weights(module: nn.Module, source: str | None, url: str | None, what: str, strict: bool = True) -> list[str]:
    """Load a state dict into ``module`` from a local file (``source``) or ``url``; returns ignored keys.

    With neither, the module keeps seeded random weights (only allowed for the small test networks,
    which pass ``url=None``).
    """
    if source:
        if not os.path.isfile(source):
            raise BackboneError(f"{what}: weights file {source!r} does not exist")
        if source.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(source)
        else:
            state = torch.load(source, map_location="cpu", weights_only=True)
    elif url:
        if offline():
            option = WEIGHT_OPTIONS.get(what, "the setting that names its weights file")
            raise BackboneError(
                f"{what}: offline (HF_HUB_OFFLINE/RESTOK_OFFLINE is set), so {url} is not downloaded; pass the local "
                f"file instead: {option}"
            )
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True, progress=False)
        except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
            raise BackboneError(
                f"{what}: could not download weights from {url} ({type(e).__name__}: {e}); "
                "on an offline machine download the file elsewhere and pass its local path"
            ) from None
    else:
        return []
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and missing:
        raise BackboneError(f"{what}: weights miss {len(missing)} keys, e.g. {missing[:5]}")
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise BackboneError(
            f"{what}: {len(wrong)} tensors have the wrong shape, e.g. {k}: file {list(state[k].shape)} vs model {list(own[k].shape)}"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict)
    return unexpected


def _seeded_init(module: nn.Module) -> None:
    """Deterministic random init for the small test networks (independent of the global RNG)."""
    g = torch.Generator().manual_seed(RANDOM_INIT_SEED)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()


def _freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients: these networks are never trained."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


# ------------------------------------------------------------------------------------------- VGG16 / LPIPS
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's numbering


class VGG16Features(nn.Module):
    """torchvision's ``vgg16().features`` up to relu5_3, same key names (``features.N.weight``)."""

    def __init__(self, width_divisor: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in VGG16_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = int(v) // width_divisor
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=False)]
                c = out
        self.features = nn.Sequential(*layers)
        self.channels = tuple(int(v) // width_divisor for v in (64, 128, 256, 512, 512))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the five tapped activations."""
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                taps.append(x)
        return taps


class _Lin(nn.Module):
    """One LPIPS head: dropout (inactive, eval) then a 1x1 bias-free conv to one channel (``linN.model.1``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """LPIPS-VGG16 (Zhang et al. 2018) as used by TiTok/taming; inputs in [0, 1], output (B,)."""

    def __init__(self, width_divisor: int = 1) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.net = VGG16Features(width_divisor)
        self.lins = nn.ModuleList([_Lin(c) for c in self.net.channels])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Perceptual distance per image between (B, 3, H, W) tensors in [0, 1]."""
        fx = self.net((x * 2 - 1 - self.shift) / self.scale)
        fy = self.net((y * 2 - 1 - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for a, b, lin in zip(fx, fy, self.lins):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # unit-normalise channels
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin.model((a - b) ** 2).mean(dim=(1, 2, 3))  # (B,)
        return total


def build_lpips(spec: str = "vgg16", vgg_weights: str | None = None, lin_weights: str | None = None) -> LPIPS:
    """The frozen LPIPS network: ``vgg16`` (public weights, file or download) or ``vgg16-tiny`` (random)."""
    if spec not in ("vgg16", "vgg16-tiny"):
        raise BackboneError(f"unknown perceptual network {spec!r}; choose 'vgg16' or 'vgg16-tiny'")
    real = spec == "vgg16"
    m = LPIPS(width_divisor=1 if real else 8)
    if not real:
        _seeded_init(m)
        with torch.no_grad():  # LPIPS heads are non-negative, so the distance is too
            for lin in m.lins:
                lin.model[1].weight.abs_()
    load_weights(m.net, vgg_weights, VGG16_URL if real else None, "LPIPS VGG16 features", strict=True)
    lins = {f"lin{i}": lin for i, lin in enumerate(m.lins)}
    holder = nn.Module()
    for k, v in lins.items():
        holder.add_module(k, v)
    if real and lin_weights is None:
        lin_weights = installed_lpips_heads()
    load_weights(holder, lin_weights, LPIPS_LIN_URL if real else None, "LPIPS lin heads", strict=True)
    return _freeze(m)


def installed_lpips_heads() -> str | None:
    """The LPIPS-VGG "lin" heads that pip's ``lpips`` wheel ships (``lpips/weights/v0.1/vgg.pth``, the same file
    taming-transformers downloads), found without importing the package (which needs torchvision); else None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    for d in (spec.submodule_search_locations or []) if spec else []:
        f = Path(d) / "weights" / "v0.1" / "vgg.pth"
        if f.is_file():
            return str(f)
    return None


# ------------------------------------------------------------------------------------------- ViT (DINO style)
class _Attention(nn.Module):
    """timm/DINO attention: fused qkv with bias, output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        B, N, D = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, N, d)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, approximate: str) -> None:
        super().__init__()
        self.fc1, self.fc2, self.approximate = nn.Linear(dim, hidden), nn.Linear(hidden, dim), approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, approximate: str) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.mlp = _Mlp(dim, 4 * dim, approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


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
        self.blocks = nn.ModuleList([_Block(dim, heads, approximate) for _ in range(depth)])
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
            h = blk(h)
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
        _seeded_init(vit)
    load_weights(vit, weights, s.url, f"discriminator backbone {spec}", strict=False)
    if spec == "dino-vits16":
        # The official DinoDisc zeroes the key part of every qkv bias on load (it cancels in softmax anyway).
        with torch.no_grad():
            for blk in vit.blocks:
                blk.attn.qkv.bias[s.dim : 2 * s.dim].zero_()
    return _freeze(vit)


# ------------------------------------------------------------------------------------------- alignment teacher
class FeatureTeacher(nn.Module):
    """Frozen teacher for representation alignment: images in [0, 1] -> CLS (B, F), patches (B, F, h, w)."""

    def __init__(self, net: nn.Module, features: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], dim: int) -> None:
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
            f"alignment teacher {spec}: offline (HF_HUB_OFFLINE/RESTOK_OFFLINE is set), so its weights are not downloaded "
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
    net = timm.create_model(DINOV3_TIMM_NAMES[spec], pretrained=True, dynamic_img_size=True, pretrained_cfg_overlay=overlay)
    patch = int(net.patch_embed.patch_size[0])

    def features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = net.forward_features(x)  # (B, 1 + 4 registers + N, F), after the final norm
        gh, gw = x.shape[-2] // patch, x.shape[-1] // patch
        patches = h[:, -gh * gw :].transpose(1, 2).reshape(x.shape[0], h.shape[-1], gh, gw)
        return h[:, 0], patches

    return _freeze(FeatureTeacher(net, features, net.num_features))


def build_feature_teacher(spec: str = "dinov3-vitl16", weights: str | None = None) -> FeatureTeacher:
    """The alignment teacher: ``dinov3-vitl16`` / ``dinov3-vits16`` (timm), ``dino-vits16`` or ``vit-tiny`` (built in)."""
    if spec in DINOV3_TIMM_NAMES:
        return _timm_dinov3(spec, weights)
    vit = build_dino_backbone(spec, weights)
    return _freeze(FeatureTeacher(vit, vit.features, vit.dim))
