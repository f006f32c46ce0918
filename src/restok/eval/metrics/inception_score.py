"""Inception Score (Salimans et al. 2016) from the Inception's 1008-class logits: over all reconstructions in one split
(TiTok's evaluator) or over consecutive splits of 5,000 samples in sample order (ADM's evaluator). Needs an Inception
with logits (torch-fidelity's); a TorchScript FID Inception has none, and the score is then left out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .base import GENERATION, Metric, register_metric

__all__ = ["inception_score", "ADM_IS_SPLIT", "InceptionScore"]

# The ADM evaluator splits the samples, in file order, into consecutive parts of this many.
ADM_IS_SPLIT = 5000


def inception_score(logits: np.ndarray, split_size: int | None = ADM_IS_SPLIT, eps: float = 0.0) -> tuple[float, float]:
    """Inception Score (mean, std over splits) from (N, C) classifier logits, in the order given.

    Defaults are the ADM evaluator's (gFID tables): consecutive splits of ``split_size`` = 5,000 samples in
    sample order, the last one shorter when N is not a multiple (one split below 5,000), no epsilon.
    ``split_size=None, eps=1e-16`` is TiTok's rFID evaluator: one split over all images.
    """
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"need (N >= 1, C) logits, got shape {tuple(x.shape)}")
    if split_size is not None and split_size < 1:
        raise ValueError(f"split_size must be >= 1 or None, got {split_size}")
    p = x.softmax(dim=1)
    scores = []
    for part in torch.split(p, split_size or p.shape[0]):
        py = part.mean(0, keepdim=True)
        kl = (part * ((part + eps).log() - (py + eps).log())).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


@register_metric
class InceptionScore(Metric):
    """``inception_score`` (and, for generation, ``inception_score_std`` over the splits)."""

    name = "inception_score"
    consumes = frozenset({"logits"})
    position = 70

    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """Nothing when the Inception gave no logits."""
        logits = inputs["logits"]
        if logits.shape[1] == 0:
            return {}
        if task == GENERATION:
            mean, std = inception_score(logits, ADM_IS_SPLIT)
            return {"inception_score": mean, "inception_score_std": std}
        return {"inception_score": inception_score(logits, split_size=None, eps=1e-16)[0]}

    def describe(self, task: str) -> str:
        """Which splits."""
        if task == GENERATION:
            return f"ADM evaluator: mean (and std) over consecutive splits of {ADM_IS_SPLIT} in sample order"
        return "one split over all reconstructions, eps 1e-16 (TiTok evaluator)"
