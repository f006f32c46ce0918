"""Evaluation metrics (paper Sec. 5, Tab. 1; Eq. 5-6).

Pure functions on arrays/tensors; the Inception feature extractor and the commands live in
:mod:`restok.evaluation`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "codebook_stats",
    "frechet_distance",
    "feature_statistics",
    "inception_score",
    "default_fid_method",
    "ADM_IS_SPLIT",
    "precision_recall",
    "psnr",
    "ssim",
]


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
    counts = torch.bincount(idx, minlength=codebook_size).double()
    p = counts / counts.sum()
    entropy = float(-(p * torch.log2(p + 1e-8)).sum())
    return {"usage": float((counts > 0).sum()) / codebook_size, "entropy": entropy}


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


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of (B, C, H, W) images in [0, 1] (data range 1)."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-20))


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
