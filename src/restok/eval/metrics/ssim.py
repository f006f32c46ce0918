"""Structural similarity (Wang et al. 2004) of each reconstruction against its original, with the settings of
``pytorch_msssim.ssim`` that the official evaluator calls; images below the 11-pixel window have none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...core.fields import Range
from .base import RECONSTRUCTION, ImagePair, Metric, register_metric

__all__ = ["ssim", "SSIM"]


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) of (B, C, H, W) images in [0, 1], averaged over channels, with the
    settings of ``pytorch_msssim.ssim`` that the official evaluator calls: 11x11 Gaussian window, sigma 1.5,
    valid filtering, K = (0.01, 0.03), data range 1 (the tests compare it with that package)."""
    x, y = x.double(), y.double()
    C = x.shape[1]
    w = _gaussian_window().to(x.device)
    if min(x.shape[-2:]) < w.numel():
        raise ValueError(f"SSIM needs images of at least {w.numel()} px, got {tuple(x.shape[-2:])}")

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = torch.nn.functional.conv2d(t, w.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
        return torch.nn.functional.conv2d(t, w.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(2).mean(-1).mean(-1)


@register_metric
class SSIM(Metric):
    """``ssim``: the mean of the per-image SSIM (None when every image is below 11 px). Also a quality target."""

    name = "ssim"
    tasks = (RECONSTRUCTION,)
    consumes = frozenset({"ssim"})
    position = 30
    higher_is_better = True
    target_range = Range(gt=0.0, le=1.0)

    def score(self, reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Per-image SSIM (B,) of reconstructions against their originals."""
        return ssim(reconstructions, images)

    def per_item(self, pair: ImagePair) -> dict[str, np.ndarray]:
        """Each image's SSIM (NaN below the window's 11 pixels)."""
        x = pair.images
        if min(x.shape[-2:]) < 11:
            return {"ssim": np.full(len(x), np.nan)}
        return {"ssim": self.score(pair.reconstructions, x).cpu().numpy()}

    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """The mean over the images that have one."""
        values = inputs["ssim"]
        return {"ssim": float(np.nanmean(values)) if np.isfinite(values).any() else None}
