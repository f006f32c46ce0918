"""Frozen pretrained networks shared by the evaluation (LPIPS as a reconstruction metric) and the tokenizer's training
objective (the perceptual loss, Sec. 3.4, Eq. 4), and the one path that loads their public weights.

:func:`load_weights` reads a local file (``weights_only=True`` or safetensors) or, online, the usual public URL; the
small test networks (``vgg16-tiny``) take seeded random weights. The LPIPS-VGG16 distance equals ``lpips.LPIPS``
(Zhang et al. 2018) on the same weights; its "lin" heads ship in pip's ``lpips`` wheel, the VGG16 backbone does not.

Axes: B batch, C channels.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn as nn

from ...runtime.network import offline
from ...runtime.requests import RequestError

__all__ = [
    "lpips_identity",
    "BackboneError",
    "load_weights",
    "seeded_init",
    "freeze",
    "VGG16Features",
    "LPIPS",
    "build_lpips",
    "installed_lpips_heads",
    "VGG16_URL",
    "LPIPS_LIN_URL",
    "WEIGHT_OPTIONS",
]

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
LPIPS_LIN_URL = "https://heibox.uni-heidelberg.de/f/607503859c864bc1b30b/?dl=1"  # taming-transformers vgg.pth

RANDOM_INIT_SEED = 1234  # small spec networks without a file: the same random weights on every machine


class BackboneError(RequestError, RuntimeError):
    """A pretrained network could not be built or its weights did not fit."""


# Which training setting takes a local file instead of each download (named in the offline error).
WEIGHT_OPTIONS = {
    "LPIPS VGG16 features": "loss.perceptual_vgg_weights=vgg16-397923af.pth",
    "LPIPS lin heads": "loss.perceptual_lin_weights=vgg.pth (or pip install lpips, whose wheel ships it)",
    "discriminator backbone dino-vits16": "loss.discriminator_weights=dino_deitsmall16_pretrain.pth "
    "(loss.alignment_weights=... when DINO is the alignment teacher)",
}


def load_weights(
    module: nn.Module, source: str | None, url: str | None, what: str, strict: bool = True, option: str | None = None
) -> list[str]:
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
            option = option or WEIGHT_OPTIONS.get(what, "the setting that names its weights file")
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
            f"{what}: {len(wrong)} tensors have the wrong shape, e.g. {k}: file {list(state[k].shape)} vs model "
            f"{list(own[k].shape)}"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict)
    return unexpected


def seeded_init(module: nn.Module) -> None:
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


def freeze(module: nn.Module) -> nn.Module:
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


def build_lpips(
    spec: str = "vgg16", vgg_weights: str | None = None, lin_weights: str | None = None, vgg_option: str | None = None
) -> LPIPS:
    """The frozen LPIPS network: ``vgg16`` (public weights, file or download) or ``vgg16-tiny`` (random)."""
    if spec not in ("vgg16", "vgg16-tiny"):
        raise BackboneError(f"unknown perceptual network {spec!r}; choose 'vgg16' or 'vgg16-tiny'")
    real = spec == "vgg16"
    m = LPIPS(width_divisor=1 if real else 8)
    if not real:
        seeded_init(m)
        with torch.no_grad():  # LPIPS heads are non-negative, so the distance is too
            for lin in m.lins:
                lin.model[1].weight.abs_()
    load_weights(
        m.net, vgg_weights, VGG16_URL if real else None, "LPIPS VGG16 features", strict=True, option=vgg_option
    )
    lins = {f"lin{i}": lin for i, lin in enumerate(m.lins)}
    holder = nn.Module()
    for k, v in lins.items():
        holder.add_module(k, v)
    if real and lin_weights is None:
        lin_weights = installed_lpips_heads()
    load_weights(holder, lin_weights, LPIPS_LIN_URL if real else None, "LPIPS lin heads", strict=True)
    m.identity = lpips_identity(spec, vgg_weights, lin_weights)
    return freeze(m)


def lpips_identity(spec: str = "vgg16", vgg_weights: str | None = None, lin_weights: str | None = None) -> dict:
    """What names the weights of the LPIPS network :func:`build_lpips` builds (recorded beside the numbers)."""
    real = spec == "vgg16"
    if real and lin_weights is None:
        lin_weights = installed_lpips_heads()
    return {
        "spec": spec,
        "vgg_weights": vgg_weights or (VGG16_URL if real else "seeded"),
        "lin_weights": lin_weights or (LPIPS_LIN_URL if real else "seeded"),
    }


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
