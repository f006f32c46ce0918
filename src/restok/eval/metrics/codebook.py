"""Codebook usage and entropy H_C of the ids a tokenizer gives (paper Eq. 5-6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .base import RECONSTRUCTION, Metric, register_metric

__all__ = ["codebook_stats", "entropy_bits", "CodebookUsage"]


def codebook_stats(indices: torch.Tensor | np.ndarray, codebook_size: int) -> dict[str, float]:
    """Codebook usage (fraction of codes used) and entropy H_C in bits, Eq. 5-6 (eps = 1e-8).

    H_C = -sum_k p_k log2(p_k + 1e-8), p_k the frequency of code k among ``indices`` (any shape).
    """
    idx = (
        torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        .reshape(-1)
        .long()
        .cpu()
    )
    if idx.numel() == 0:
        raise ValueError("codebook_stats needs at least one index")
    if int(idx.min()) < 0 or int(idx.max()) >= codebook_size:
        raise ValueError(f"indices must be in [0, {codebook_size}), got range [{int(idx.min())}, {int(idx.max())}]")
    counts = torch.bincount(idx, minlength=codebook_size)
    return {"usage": float((counts > 0).sum()) / codebook_size, "entropy": entropy_bits(counts)}


def entropy_bits(counts: torch.Tensor) -> float:
    """H_C in bits of code ``counts`` (Eq. 6, eps = 1e-8), never negative.

    With one code used, Eq. 6 gives -log2(1 + 1e-8) = -1.4e-8 bits: the eps that keeps log2(0) finite, not an
    entropy; an entropy is >= 0, so the sum is clamped there (it differs from Eq. 6 only below 1.5e-8 bits)."""
    p = counts.double() / counts.sum()
    return max(0.0, float(-(p * torch.log2(p + 1e-8)).sum()))


@register_metric
class CodebookUsage(Metric):
    """``codebook_usage`` and ``codebook_entropy`` over every id of every image (at the prefix evaluated)."""

    name = "codebook"
    tasks = (RECONSTRUCTION,)
    consumes = frozenset({"ids", "codebook_size"})
    position = 40

    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """Usage (fraction of codes used) and entropy in bits."""
        cb = codebook_stats(inputs["ids"], inputs["codebook_size"])
        return {"codebook_usage": cb["usage"], "codebook_entropy": cb["entropy"]}
