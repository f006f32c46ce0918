"""Peak signal-to-noise ratio of each reconstruction against its original (data range 1), averaged over images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...core.fields import Range
from .base import RECONSTRUCTION, ImagePair, Metric, register_metric

__all__ = ["psnr", "PSNR"]


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of (B, C, H, W) images in [0, 1] (data range 1)."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-20))


@register_metric
class PSNR(Metric):
    """``psnr``: the mean of the per-image PSNR in dB. Also a quality target of the token budgets (higher is better)."""

    name = "psnr"
    tasks = (RECONSTRUCTION,)
    consumes = frozenset({"psnr"})
    position = 20
    higher_is_better = True
    # Up to the 200 dB that identical 8-bit images score (the 1e-20 floor of the squared error).
    target_range = Range(gt=0.0, le=200.0)

    def score(self, reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Per-image PSNR (B,) of 8-bit reconstructions against their originals."""
        return psnr(reconstructions, images)

    def per_item(self, pair: ImagePair) -> dict[str, np.ndarray]:
        """Each image's PSNR."""
        return {"psnr": self.score(pair.reconstructions, pair.images).cpu().numpy()}

    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """The mean over images."""
        return {"psnr": float(np.mean(inputs["psnr"]))}
