"""Fréchet Inception Distance (Heusel et al. 2017): rFID between the originals' and the reconstructions' Inception
features (TiTok's evaluator), gFID between the samples' features and a reference batch's statistics (ADM's evaluator),
both with SciPy's matrix square root as those evaluators compute it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import GENERATION, RECONSTRUCTION, Metric, register_metric

__all__ = ["feature_statistics", "frechet_distance", "default_fid_method", "FID"]


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of (N, D) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, method: str = "sqrtm") -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2) (FID's formula).

    ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

    ``sqrtm`` (default) is the computation of the official evaluators (TiTok's rFID and ADM's gFID, after
    TTUR): SciPy's matrix square root of ``sigma1 @ sigma2``; if it is not finite, 1e-6 is added to both
    diagonals (ADM); an imaginary part larger than 1e-3 on the diagonal is an error, a smaller one is dropped.
    The order of the arguments matters in the last digits: TiTok passes (real, fake), ADM (sample, reference).
    ``eigh`` takes the trace from the eigenvalues of sigma1^(1/2) sigma2 sigma1^(1/2) (symmetric, same spectrum):
    faster and needs no SciPy, equal to ``sqrtm`` up to float64 round-off for well-conditioned covariances.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    if method == "eigh":
        w, v = np.linalg.eigh((s1 + s1.T) / 2)
        root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        m = root1 @ s2 @ root1
        tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    elif method == "sqrtm":
        import warnings

        from scipy import linalg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SciPy warns on near-singular products; handled below as the evaluators do
            covmean = linalg.sqrtm(s1.dot(s2))
            if not np.isfinite(covmean).all():
                offset = np.eye(s1.shape[0]) * 1e-6
                covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in the covariance square root")
            covmean = covmean.real
        tr_covmean = float(np.trace(covmean))
    else:
        raise ValueError(f"method must be 'sqrtm' or 'eigh', got {method!r}")
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def default_fid_method() -> str:
    """``sqrtm`` (the official evaluators' computation) when SciPy is installed, else ``eigh``."""
    import importlib.util

    return "sqrtm" if importlib.util.find_spec("scipy") is not None else "eigh"


@register_metric
class FID(Metric):
    """rFID (reconstruction: real vs reconstruction features, in that order) or gFID (generation: samples vs the
    reference's ``mu``/``sigma``, ADM's order)."""

    name = "fid"
    consumes = frozenset({"real_features", "fake_features", "reference"})
    position = 10

    def __init__(self, method: str | None = None) -> None:
        self.method = method  # "sqrtm" or "eigh" (see frechet_distance); None: sqrtm when SciPy is installed

    def needs(self, task: str) -> frozenset[str]:
        """Both feature sets (reconstruction), or the samples' and the reference (generation)."""
        return frozenset({"real_features" if task == RECONSTRUCTION else "reference", "fake_features"})

    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """``rfid`` (nothing below two images) or ``gfid``."""
        method = self.method or default_fid_method()
        fake = inputs["fake_features"]
        if task == RECONSTRUCTION:
            if fake.shape[0] < 2:
                return {}
            mu_r, sig_r = feature_statistics(inputs["real_features"])
            mu_f, sig_f = feature_statistics(fake)
            return {"rfid": frechet_distance(mu_r, sig_r, mu_f, sig_f, method=method)}
        ref = inputs["reference"]
        mu, sigma = feature_statistics(fake)
        return {"gfid": frechet_distance(mu, sigma, ref["mu"], ref["sigma"], method=method)}

    def describe(self, task: str) -> str:
        """Which square root, in which argument order."""
        if (self.method or default_fid_method()) != "sqrtm":
            return "eigh (SciPy missing)"
        if task == GENERATION:
            return "scipy sqrtm of sigma_sample @ sigma_ref (ADM evaluator)"
        return "scipy sqrtm of sigma_real @ sigma_fake (TiTok evaluator)"
