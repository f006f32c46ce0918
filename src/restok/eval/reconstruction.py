"""The reconstruction protocol (TiTok's, as the official ``test_restok.py``): rFID, PSNR, SSIM, codebook usage and
entropy, Inception Score, of one prefix length or of every one in one pass (the rate curve).

Each image goes through the evaluation transform (:func:`restok.data.images.eval_transform`: torchvision's Resize +
CenterCrop, bit for bit), is reconstructed from k tokens, clamped to [0, 1] and rounded to 8 bits; both sides are fed
to the Inception as ``(x * 255).to(uint8)``; rFID is the Fréchet distance between the originals' and the
reconstructions' features (not against precomputed statistics) with SciPy's ``sqrtm``; PSNR per image then averaged;
SSIM as ``pytorch_msssim.ssim``; codebook usage and entropy over all ids; Inception Score over all reconstructions in
one split (eps 1e-16).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.hierarchy import select_prefixes
from ..data.datasets import ImageDataset
from ..data.records import ImageSource
from ..runtime.files import write_json
from ..runtime.processes import Processes
from ..runtime.progress import progress
from .budgets import budget_distribution
from .inception import InceptionFeatures
from .metrics import (
    codebook_stats,
    default_fid_method,
    feature_statistics,
    frechet_distance,
    inception_score,
    psnr,
    ssim,
)
from .plots import plot_rate_curve
from .protocol import PROTOCOL_VERSION, EvaluationError, merge_work, now, open_work, to_uint8_truncate, versions

__all__ = [
    "reconstruction_batch",
    "prefix_arrays",
    "summarize_reconstruction",
    "evaluate_reconstruction",
    "token_lengths",
]


def _scored(
    tokenizer: Any,
    x: torch.Tensor,
    ids: torch.Tensor,
    inception: InceptionFeatures | None,
    pixel_dtype: torch.dtype,
    lpips: Any = None,
) -> dict[str, np.ndarray]:
    """PSNR, SSIM, (with an Inception) features and logits, and (with an LPIPS network) LPIPS of the 8-bit
    reconstruction from ``ids``."""
    rec = tokenizer.decode(ids, pixel_dtype)  # (B, 3, H, W) clamped to [0, 1]
    rec = torch.round(rec * 255) / 255  # 8-bit reconstructions, as the official evaluator
    arrays = {
        "psnr": psnr(rec, x).cpu().numpy(),
        "ssim": ssim(rec, x).cpu().numpy() if min(x.shape[-2:]) >= 11 else np.full(len(x), np.nan),
    }
    if lpips is not None:
        arrays["lpips"] = lpips(rec, x).double().cpu().numpy()
    if inception is not None:
        f_fake, logits = inception(to_uint8_truncate(rec))
        arrays.update(
            fake=f_fake.cpu().numpy(), logits=logits.cpu().numpy() if logits is not None else np.zeros((len(x), 0))
        )
    return arrays


@torch.no_grad()
def reconstruction_batch(
    tokenizer: Any,
    x: torch.Tensor,
    tokens: int | Sequence[int],
    inception: InceptionFeatures | None = None,
    pixel_dtype: torch.dtype = torch.float32,
    lpips: Any = None,
) -> dict[str, np.ndarray]:
    """Per-image results of one batch (B, 3, S, S) in [0, 1] under the reconstruction protocol: ``psnr``,
    ``ssim`` (NaN below 11 px), ``ids`` and, with an Inception, ``real``/``fake`` features and ``logits``.

    With several prefix lengths (the rate curve) the images are encoded once and each prefix decoded: the arrays of
    length k are keyed ``psnr@k``, ``ssim@k``, ``fake@k``, ``logits@k``; ``ids`` holds the longest prefix.
    """
    ks = [tokens] if isinstance(tokens, int) else sorted(int(k) for k in tokens)
    ids = tokenizer.encode(x)[:, : ks[-1]]  # (B, k_max)
    out: dict[str, np.ndarray] = {"ids": ids.cpu().numpy().astype(np.int64)}
    if inception is not None:
        out["real"] = inception(to_uint8_truncate(x))[0].cpu().numpy()
    for k in ks:
        one = _scored(tokenizer, x, ids[:, :k], inception, pixel_dtype, lpips)
        out.update(one if isinstance(tokens, int) else {f"{name}@{k}": v for name, v in one.items()})
    return out


def prefix_arrays(arrays: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """The single-length view (``psnr``, ``ids[:, :k]``, ...) of rate-curve arrays at prefix length ``k``."""
    view = {name[: -len(f"@{k}")]: v for name, v in arrays.items() if name.endswith(f"@{k}")}
    view["ids"] = arrays["ids"][:, :k]
    if "real" in arrays:
        view["real"] = arrays["real"]
    return view


def summarize_reconstruction(
    arrays: dict[str, np.ndarray], codebook_size: int, fid_method: str | None = None
) -> dict[str, Any]:
    """The protocol's numbers from the concatenated per-image results of :func:`reconstruction_batch`."""
    n = int(arrays["ids"].shape[0])
    cb = codebook_stats(arrays["ids"], codebook_size)
    out: dict[str, Any] = {
        "psnr": float(np.mean(arrays["psnr"])),
        "ssim": float(np.nanmean(arrays["ssim"])) if np.isfinite(arrays["ssim"]).any() else None,
        "codebook_usage": cb["usage"],
        "codebook_entropy": cb["entropy"],
        "num_images": n,
    }
    if "lpips" in arrays:
        out["lpips"] = float(np.mean(arrays["lpips"]))
    if "real" in arrays and n >= 2:
        mu_r, sig_r = feature_statistics(arrays["real"])
        mu_f, sig_f = feature_statistics(arrays["fake"])
        out["rfid"] = frechet_distance(mu_r, sig_r, mu_f, sig_f, method=fid_method or default_fid_method())
    if "logits" in arrays and arrays["logits"].shape[1] > 0:
        out["inception_score"] = inception_score(arrays["logits"], split_size=None, eps=1e-16)[0]
    return out


def token_lengths(tokenizer: Any, tokens: int | str | Sequence[int] | None) -> tuple[list[int], bool]:
    """The prefix lengths to evaluate and whether that is a rate curve: one length (default: all tokens), ``"all"``
    or a list; an EvaluationError names lengths the tokenizer does not decode."""
    curve = tokens == "all" or isinstance(tokens, (list, tuple))
    try:
        return select_prefixes(
            tokens, tuple(tokenizer.prefix_lengths), tokenizer.decodable, tokenizer.describe_lengths()
        ), curve  # type: ignore[arg-type]
    except ValueError as e:
        raise EvaluationError(f"--tokens: {e}") from None


def _image_count(source: ImageSource, num_images: int | None, allow_partial: bool) -> tuple[int, int]:
    """(asked, used): the images asked for and those the data has, refusing fewer unless ``allow_partial``."""
    available = len(source)
    asked = num_images or available
    if asked > available and not allow_partial:
        raise EvaluationError(
            f"asked for {asked} images but the data has {available}; refusing to report a number on fewer "
            "(pass --allow-partial to accept it)"
        )
    return asked, min(asked, available)


def _run_chunks(
    tokenizer: Any,
    dataset: ImageDataset,
    job: Any,
    n: int,
    batch_size: int,
    tokens: int | list[int],
    inception: InceptionFeatures,
    pixel_dtype: torch.dtype,
    processes: Processes,
    lpips: Any = None,
) -> None:
    """This process's chunks of the reconstruction protocol (unreadable images counted and named)."""
    skipped: list[str] = []
    k_max = tokens if isinstance(tokens, int) else max(tokens)
    for c in progress(job.todo(), "rFID", enabled=processes.shows_progress, unit="batch"):
        items = []
        for i in range(c * batch_size, min((c + 1) * batch_size, n)):
            try:
                items.append(dataset.load(i, 0))
            except Exception as e:  # noqa: BLE001 - unreadable images are counted and named
                skipped.append(f"{dataset.source.records[i].name} ({type(e).__name__}: {e})")
        if not items:
            job.save(c, {"ids": np.zeros((0, k_max), np.int64)})  # done, nothing to merge
            continue
        job.save(
            c,
            reconstruction_batch(
                tokenizer, torch.stack(items).to(tokenizer.device), tokens, inception, pixel_dtype, lpips
            ),
        )
    job.note_skipped(skipped)


def _summary(
    merged: dict[str, np.ndarray], tokenizer: Any, ks: list[int], curve: bool, target_psnr: float | None
) -> dict[str, Any]:
    """The numbers of one length, or of every length (``rate_curve``) with the longest at the top level."""
    fid_method = default_fid_method()
    if not curve:
        result = summarize_reconstruction(merged, tokenizer.codebook_size, fid_method)
        return {"rfid": result.pop("rfid", None), **result}
    rows = []
    for t in ks:
        row = summarize_reconstruction(prefix_arrays(merged, t), tokenizer.codebook_size, fid_method)
        rows.append({"tokens": t, "rfid": row.pop("rfid", None), **row})
    result = {k: v for k, v in rows[-1].items() if k != "tokens"}
    result["rate_curve"] = rows
    if target_psnr is not None:
        result["budget"] = budget_distribution(merged, ks, float(target_psnr))
    return result


@torch.no_grad()
def evaluate_reconstruction(
    tokenizer: Any,
    source: ImageSource,
    inception: InceptionFeatures,
    out: str | Path,
    tokens: int | str | Sequence[int] | None = None,
    num_images: int | None = None,
    batch_size: int = 32,
    allow_partial: bool = False,
    processes: Processes | None = None,
    pixel_dtype: torch.dtype = torch.float32,
    target_psnr: float | None = None,
    lpips: Any = None,
) -> dict[str, Any] | None:
    """rFID, PSNR, SSIM, codebook usage and entropy of ``tokenizer`` on ``source``; writes ``out`` (JSON).

    ``tokens``: one prefix length (default: all tokens), or ``"all"`` / a list for the rate curve -- every length in
    one pass (each batch encoded once, each prefix decoded), as ``rate_curve`` in the JSON (and ``OUT.png`` when
    matplotlib is installed), the top-level numbers being those of the longest; with ``target_psnr``, also the
    distribution of the shortest prefix meeting it per image. ``pixel_dtype``: the CNN pixel decoder's precision.
    ``processes``: the processes of a torchrun launch (chunk k done by process k mod world); None for one. ``lpips``: an
    LPIPS network (:func:`restok.models.layers.perceptual.build_lpips`) to score LPIPS-VGG too (None: not measured)."""
    processes = processes or Processes()
    out = Path(out)
    ks, curve = token_lengths(tokenizer, tokens)
    if target_psnr is not None and not curve:
        raise EvaluationError("a PSNR target needs the rate curve: pass --tokens all")
    asked, n = _image_count(source, num_images, allow_partial)
    settings = {
        "protocol": PROTOCOL_VERSION,
        "task": "reconstruction",
        "tokens": ks if curve else ks[-1],
        "num_images": n,
        "batch_size": batch_size,
        "data": source.description,
        "tokenizer": tokenizer.identity(),
        "inception": inception.identity(),
        "precision": str(next(tokenizer.parameters()).dtype),
        "pixel_decoder_dtype": str(pixel_dtype),
    }
    if lpips is not None:  # only then: work folders of runs without LPIPS keep resuming
        settings["lpips"] = getattr(lpips, "identity", "LPIPS-VGG16")
    job = open_work(out, settings, math.ceil(n / batch_size), processes)
    t0 = time.perf_counter()
    dataset = ImageDataset(source, tokenizer.config.image_size, train=False)
    _run_chunks(
        tokenizer, dataset, job, n, batch_size, ks if curve else ks[-1], inception, pixel_dtype, processes, lpips
    )
    merged = merge_work(job, processes)
    if merged is None:
        return None
    got, skipped = int(merged["ids"].shape[0]), job.skipped()
    if got < asked and not allow_partial:
        raise EvaluationError(
            f"only {got} of {asked} images could be evaluated ({len(skipped)} unreadable, e.g. {skipped[:2]}); "
            "refusing to report (pass --allow-partial to accept it)"
        )
    result = _summary(merged, tokenizer, ks, curve, target_psnr)
    result["settings"] = {
        **settings,
        "crop": f"torchvision Resize({tokenizer.config.image_size}, bicubic, antialias) + CenterCrop, on PIL images",
        "num_images_asked": asked,
        "partial": got < asked,
        "skipped_files": skipped,
        "fid": "scipy sqrtm of sigma_real @ sigma_fake (TiTok evaluator)"
        if default_fid_method() == "sqrtm"
        else "eigh (SciPy missing)",
        "inception_score": "one split over all reconstructions, eps 1e-16 (TiTok evaluator)",
        "processes": processes.world,
        "date": now(),
        "seconds": time.perf_counter() - t0,
        "versions": versions(),
    }
    write_json(out, result)
    if curve:
        plot_rate_curve(out.with_suffix(".png"), result["rate_curve"])
    return result
