"""LPIPS (Zhang et al. 2018) with the VGG16 backbone, as TiTok's training and many tokenizer papers report it, of
each 8-bit reconstruction against its original; lower is better. The network is
:func:`restok.models.layers.perceptual.build_lpips` (the training loss uses the same one): its linear heads come with
pip's ``lpips`` wheel, the VGG16 backbone is no wheel's, so offline it is a local file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...core.fields import Range
from .base import RECONSTRUCTION, ImagePair, Metric, register_metric

__all__ = ["LPIPSDistance"]


@register_metric
class LPIPSDistance(Metric):
    """``lpips``: the mean of the per-image LPIPS-VGG16 distance. Also a quality target (lower is better)."""

    name = "lpips"
    tasks = (RECONSTRUCTION,)
    consumes = frozenset({"lpips"})
    position = 60
    optional = True
    higher_is_better = False
    target_range = Range(ge=0.0, le=10.0)

    def __init__(self, network: torch.nn.Module | None = None, spec: Any = None) -> None:
        # the frozen LPIPS network, or a spec (``build(device)``, ``identity()``) that builds it on first use
        if (network is None) == (spec is None):
            raise ValueError("LPIPSDistance takes an LPIPS network or a spec that builds one")
        self.network, self.spec = network, spec

    def _net(self, device: torch.device) -> torch.nn.Module:
        if self.network is None:
            self.network = self.spec.build(device)
        return self.network

    def score(self, reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS (B,) in float64."""
        return self._net(images.device)(reconstructions, images).double().flatten()

    def per_item(self, pair: ImagePair) -> dict[str, np.ndarray]:
        """Each image's distance."""
        return {"lpips": self.score(pair.reconstructions, pair.images).cpu().numpy()}

    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """The mean over images."""
        return {"lpips": float(np.mean(inputs["lpips"]))}

    def work_identity(self) -> Any:
        """The network's weights (work folders of runs without LPIPS keep resuming: only LPIPS runs record it)."""
        if self.network is None:
            return self.spec.identity()
        return getattr(self.network, "identity", "LPIPS-VGG16")
