"""Kernel Inception Distance (Bińkowski et al. 2018): the squared MMD between two sets of Inception features under the
cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, estimated without bias (the U-statistic within each set), averaged
over random subsets -- as torch-fidelity computes it (its defaults: 100 subsets of 1,000, random seed 2020), which the
tests check bit for bit. Unlike FID it has no bias at small sample counts, so it is the number to compare at the few
hundred images of a CPU experiment; the subsets are then all the images (each subset has at most as many as the
smaller side has). Reconstruction: the originals' features against the reconstructions'. Generation: the samples'
against the reference batch's activations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import GENERATION, Metric, register_metric

__all__ = ["kernel_inception_distance", "polynomial_mmd2", "KID"]


def _poly(x: np.ndarray, y: np.ndarray, degree: int, gamma: float | None, coef0: float) -> np.ndarray:
    """The polynomial kernel matrix (x y^T * gamma + coef0)^degree, gamma 1/d by default."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (np.matmul(x, y.T) * gamma + coef0) ** degree


def polynomial_mmd2(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased squared MMD of two equal-size sets (m, d): the within-set kernel sums without their diagonals over
    m(m - 1), minus twice the cross-set sum over m^2."""
    k_xx, k_yy, k_xy = (
        _poly(x, x, degree, gamma, coef0),
        _poly(y, y, degree, gamma, coef0),
        _poly(x, y, degree, gamma, coef0),
    )
    m = k_xx.shape[0]
    xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
    yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
    return float((xx + yy) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


def kernel_inception_distance(
    features_1: np.ndarray,
    features_2: np.ndarray,
    subsets: int = 100,
    subset_size: int | None = 1000,
    seed: int = 2020,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> tuple[float, float]:
    """KID mean and standard deviation over ``subsets`` random subsets of ``subset_size`` features from each side
    (drawn without replacement from one ``RandomState(seed)``, side 1 then side 2, as torch-fidelity draws them);
    ``subset_size`` None or larger than a side: the smaller side's count."""
    f1, f2 = np.asarray(features_1), np.asarray(features_2)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"need (N, D) and (M, D) features, got {f1.shape} and {f2.shape}")
    size = min(len(f1), len(f2), subset_size or len(f1))
    if size < 2:
        raise ValueError(f"KID needs at least 2 features on each side, got {len(f1)} and {len(f2)}")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        a = f1[rng.choice(len(f1), size, replace=False)]
        b = f2[rng.choice(len(f2), size, replace=False)]
        mmds[i] = polynomial_mmd2(a, b, degree, gamma, coef0)
    return float(np.mean(mmds)), float(np.std(mmds))


@register_metric
class KID(Metric):
    """``kid`` and ``kid_std`` (``--metric kid``)."""

    name = "kid"
    consumes = frozenset({"real_features", "fake_features", "reference"})
    position = 80
    optional = True

    def __init__(self, subsets: int = 100, subset_size: int = 1000, seed: int = 2020) -> None:
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed

    def result_keys(self, task: str) -> tuple[str, ...]:
        """The mean and the spread over subsets."""
        return ("kid", "kid_std")

    def needs(self, task: str) -> frozenset[str]:
        """Both feature sets (reconstruction), or the samples' and the reference (generation)."""
        return frozenset({"real_features" if task != GENERATION else "reference", "fake_features"})

    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """KID between the two feature sets of the task (None below two images)."""
        if task == GENERATION:  # ADM's order: the samples, then the reference
            first, second = inputs["fake_features"], inputs["reference"]["activations"]
        else:  # TiTok's order: the originals, then the reconstructions
            first, second = inputs["real_features"], inputs["fake_features"]
        if min(len(first), len(second)) < 2:
            return {"kid": None, "kid_std": None}
        mean, std = kernel_inception_distance(first, second, self.subsets, self.subset_size, self.seed)
        return {"kid": mean, "kid_std": std}

    def describe(self, task: str) -> str:
        """Kernel, estimator, subsets."""
        sides = "samples vs reference activations" if task == GENERATION else "originals vs reconstructions"
        return (
            f"unbiased MMD^2, kernel (x.y/d + 1)^3, {self.subsets} subsets of min({self.subset_size}, N), "
            f"RandomState({self.seed}); {sides} (torch-fidelity's kid)"
        )
