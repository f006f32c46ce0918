"""Improved precision and recall (Kynkäänniemi et al. 2019) of the samples' Inception features against the reference
activations, with k = 3 as the ADM evaluator computes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .base import GENERATION, Metric, register_metric

__all__ = ["precision_recall", "PrecisionRecall"]


def _kth_radius(feats: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point (the manifold radius)."""
    out = []
    for a in torch.split(feats, chunk):
        d = torch.cdist(a, feats)  # (c, N)
        out.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself at distance 0
    return torch.cat(out)


def _covered(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each query point: does it fall inside some reference point's k-NN ball?"""
    out = []
    for a in torch.split(query, chunk):
        d = torch.cdist(a, ref)  # (c, M)
        out.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019; the ADM evaluator's definition), k = 3.

    precision: fraction of generated samples inside the real manifold (union of k-NN balls of real features);
    recall: fraction of real samples inside the generated manifold.
    """
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if r.dim() != 2 or f.dim() != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"need (N, D) and (M, D) features, got {tuple(r.shape)} and {tuple(f.shape)}")
    if min(r.shape[0], f.shape[0]) <= k:
        raise ValueError(f"need more than k={k} samples on each side, got {r.shape[0]} and {f.shape[0]}")
    r_radii, f_radii = _kth_radius(r, k), _kth_radius(f, k)
    precision = float(_covered(f, r, r_radii).double().mean())
    recall = float(_covered(r, f, f_radii).double().mean())
    return {"precision": precision, "recall": recall}


@register_metric
class PrecisionRecall(Metric):
    """``precision`` and ``recall`` (k = 3) of the samples against the reference activations."""

    name = "precision_recall"
    tasks = (GENERATION,)
    consumes = frozenset({"fake_features", "reference"})
    position = 40

    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """Both fractions."""
        pr = precision_recall(inputs["reference"]["activations"], inputs["fake_features"], k=3)
        return {"precision": pr["precision"], "recall": pr["recall"]}
