"""The reconstruction protocol (TiTok's, as the official ``test_restok.py``): rFID, PSNR, SSIM, codebook usage and
entropy, Inception Score -- and the optional metrics asked for (LPIPS, KID) -- of one prefix length or of every one in
one pass (the rate curve).

Each image goes through the evaluation transform (:func:`restok.data.images.eval_transform`: torchvision's Resize +
CenterCrop, bit for bit), is reconstructed from k tokens, clamped to [0, 1] and rounded to 8 bits; both sides are fed
to the Inception as ``(x * 255).to(uint8)``; rFID is the Fréchet distance between the originals' and the
reconstructions' features (not against precomputed statistics) with SciPy's ``sqrtm``; PSNR per image then averaged;
SSIM as ``pytorch_msssim.ssim``; codebook usage and entropy over all ids; Inception Score over all reconstructions in
one split (eps 1e-16). Each number is computed by its metric (:mod:`restok.eval.metrics`) over the job's context
(:class:`~restok.eval.context.EvalContext`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.datasets import ImageDataset
from ..data.records import ImageSource
from ..runtime.files import write_json
from ..runtime.processes import Processes
from ..runtime.requests import field
from .budgets import budget_distribution
from .context import EvalContext, EvalOptions
from .inception import InceptionFeatures
from .metrics import (
    FID,
    RECONSTRUCTION,
    ImagePair,
    InceptionScore,
    LPIPSDistance,
    Metric,
    metric_class,
    metric_classes,
)
from .plots import plot_rate_curve
from .protocol import PROTOCOL_VERSION, EvaluationError, now, to_uint8_truncate, versions

if TYPE_CHECKING:
    from ..models.tokenizer import Tokenizer

__all__ = [
    "reconstruction_metrics",
    "reconstruction_batch",
    "prefix_arrays",
    "summarize_reconstruction",
    "evaluate_reconstruction",
    "reconstruct_dataset",
    "token_lengths",
    "RATE_CURVE",
]

RATE_CURVE = "all"  # --tokens all: every prefix length the tokenizer decodes, in one pass
_FEATURES = frozenset({"real_features", "fake_features", "logits"})


def reconstruction_metrics(lpips: Any = None, extra: Sequence[str | Metric] = ()) -> list[Metric]:
    """The protocol's metrics in result order: rFID, PSNR, SSIM, codebook usage/entropy, Inception Score, with LPIPS
    when ``lpips`` (an LPIPS network) is given and the optional metrics ``extra`` names (or gives)."""
    metrics: list[Metric] = [cls() for cls in metric_classes(RECONSTRUCTION, optional=False)]
    if lpips is not None:
        metrics.append(LPIPSDistance(lpips))
    for m in extra:
        metrics.append(m if isinstance(m, Metric) else metric_class(m, RECONSTRUCTION)())
    return sorted(metrics, key=lambda m: m.position)


def _needs_features(metrics: Sequence[Metric]) -> bool:
    return any(m.consumes & _FEATURES for m in metrics)


def _scored(
    tokenizer: Tokenizer,
    x: torch.Tensor,
    ids: torch.Tensor,
    inception: InceptionFeatures | None,
    pixel_dtype: torch.dtype,
    metrics: Sequence[Metric],
) -> dict[str, np.ndarray]:
    """The per-image arrays of the metrics and, with an Inception, the reconstructions' features and logits, for the
    8-bit reconstruction from ``ids``."""
    rec = tokenizer.decode(ids, pixel_dtype)  # (B, 3, H, W) clamped to [0, 1]
    rec = torch.round(rec * 255) / 255  # 8-bit reconstructions, as the official evaluator
    pair = ImagePair(x, rec)
    arrays: dict[str, np.ndarray] = {}
    for m in metrics:
        arrays.update(m.per_item(pair))
    if inception is not None and _needs_features(metrics):
        f_fake, logits = inception(to_uint8_truncate(rec))
        arrays["fake"] = f_fake.cpu().numpy()
        arrays["logits"] = logits.cpu().numpy() if logits is not None else np.zeros((len(x), 0))
    return arrays


@torch.no_grad()
def reconstruction_batch(
    tokenizer: Tokenizer,
    x: torch.Tensor,
    tokens: int | Sequence[int],
    inception: InceptionFeatures | None = None,
    pixel_dtype: torch.dtype = torch.float32,
    lpips: Any = None,
    metrics: Sequence[Metric] | None = None,
) -> dict[str, np.ndarray]:
    """Per-image results of one batch (B, 3, S, S) in [0, 1] under the reconstruction protocol: ``psnr``, ``ssim`` (NaN
    below 11 px), ``ids`` and, with an Inception, ``real``/``fake`` features and ``logits`` (and the per-image arrays
    of ``metrics``, default :func:`reconstruction_metrics` with ``lpips``).

    With several prefix lengths (the rate curve) the images are encoded once and each prefix decoded: the arrays of
    length k are keyed ``psnr@k``, ``ssim@k``, ``fake@k``, ``logits@k``; ``ids`` holds the longest prefix.
    """
    metrics = reconstruction_metrics(lpips) if metrics is None else metrics
    ks = [tokens] if isinstance(tokens, int) else sorted(int(k) for k in tokens)
    ids = tokenizer.encode(x)[:, : ks[-1]]  # (B, k_max)
    out: dict[str, np.ndarray] = {"ids": ids.cpu().numpy().astype(np.int64)}
    if inception is not None and _needs_features(metrics):
        out["real"] = inception(to_uint8_truncate(x))[0].cpu().numpy()
    for k in ks:
        one = _scored(tokenizer, x, ids[:, :k], inception, pixel_dtype, metrics)
        out.update(one if isinstance(tokens, int) else {f"{name}@{k}": v for name, v in one.items()})
    return out


def prefix_arrays(arrays: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """The single-length view (``psnr``, ``ids[:, :k]``, ...) of rate-curve arrays at prefix length ``k``."""
    view = {name[: -len(f"@{k}")]: v for name, v in arrays.items() if name.endswith(f"@{k}")}
    view["ids"] = arrays["ids"][:, :k]
    if "real" in arrays:
        view["real"] = arrays["real"]
    return view


def _inputs(arrays: dict[str, np.ndarray], codebook_size: int) -> dict[str, Any]:
    """The merged arrays under the names the metrics consume (those that exist)."""
    names = {"real": "real_features", "fake": "fake_features"}
    return {names.get(k, k): v for k, v in arrays.items()} | {"codebook_size": codebook_size}


def summarize_reconstruction(
    arrays: dict[str, np.ndarray],
    codebook_size: int,
    fid_method: str | None = None,
    metrics: Sequence[Metric] | None = None,
) -> dict[str, Any]:
    """The protocol's numbers from the concatenated per-image results of :func:`reconstruction_batch`, in result
    order (the image count after the codebook's); a metric whose inputs are missing (no Inception) is left out."""
    metrics = reconstruction_metrics() if metrics is None else metrics
    if fid_method is not None:
        metrics = [FID(fid_method) if isinstance(m, FID) else m for m in metrics]
    inputs = _inputs(arrays, codebook_size)
    out: dict[str, Any] = {}
    for m in metrics:
        if m.position > 50 and "num_images" not in out:
            out["num_images"] = int(arrays["ids"].shape[0])
        if m.needs(RECONSTRUCTION) <= set(inputs):
            out.update(m.compute(inputs, RECONSTRUCTION))
    out.setdefault("num_images", int(arrays["ids"].shape[0]))
    return out


def token_lengths(tokenizer: Tokenizer, tokens: int | str | Sequence[int] | None) -> tuple[list[int], bool]:
    """The prefix lengths to evaluate and whether that is a rate curve: one length (default: all tokens), ``"all"``
    or a list (:meth:`Tokenizer.select_lengths`, which names lengths the tokenizer does not decode)."""
    curve = tokens == RATE_CURVE or isinstance(tokens, (list, tuple)) or (isinstance(tokens, str) and "," in tokens)
    return tokenizer.select_lengths(tokens), curve


@dataclass(frozen=True)
class _Plan:
    """What one reconstruction evaluation measures: the lengths (a rate curve or one), the images, the metrics."""

    lengths: list[int]
    curve: bool
    asked: int
    used: int
    metrics: list[Metric]
    pixel_dtype: torch.dtype
    target_psnr: float | None

    @property
    def tokens(self) -> int | list[int]:
        """What a batch is reconstructed from: every length of the curve, or the one."""
        return self.lengths if self.curve else self.lengths[-1]


def _plan(
    ctx: EvalContext,
    tokenizer: Tokenizer,
    source: ImageSource,
    tokens: int | str | Sequence[int] | None,
    num_images: int | None,
    metrics: list[Metric],
    pixel_dtype: torch.dtype,
    target_psnr: float | None,
) -> _Plan:
    """The lengths and image count, refusing a PSNR target without the curve and more images than the data has."""
    lengths, curve = token_lengths(tokenizer, tokens)
    if target_psnr is not None and not curve:
        raise EvaluationError(f"a PSNR target needs the rate curve: pass {field('tokens')} all")
    available = len(source)
    asked = num_images or available
    if asked > available and not ctx.allow_partial:
        raise EvaluationError(
            f"asked for {asked} images but the data has {available}; refusing to report a number on fewer "
            f"(pass {field('allow_partial')} to accept it)"
        )
    return _Plan(lengths, curve, asked, min(asked, available), metrics, pixel_dtype, target_psnr)


def _settings(ctx: EvalContext, tokenizer: Tokenizer, source: ImageSource, plan: _Plan) -> dict[str, Any]:
    """What shapes the chunks: a work folder written under other settings is refused."""
    settings = {
        "protocol": PROTOCOL_VERSION,
        "task": "reconstruction",
        "tokens": plan.lengths if plan.curve else plan.lengths[-1],
        "num_images": plan.used,
        "batch_size": ctx.batch_size,
        "data": source.description,
        "tokenizer": tokenizer.identity(),
        "inception": ctx.inception.identity(),
        "precision": str(next(tokenizer.parameters()).dtype),
        "pixel_decoder_dtype": str(plan.pixel_dtype),
    }
    for m in plan.metrics:  # only metrics whose per-image arrays depend on more: other work folders keep resuming
        if m.work_identity() is not None:
            settings[m.name] = m.work_identity()
    return settings


def _run_chunks(ctx: EvalContext, tokenizer: Tokenizer, dataset: ImageDataset, job: Any, plan: _Plan) -> None:
    """This process's chunks of the protocol (unreadable images counted and named)."""
    skipped: list[str] = []
    n, bs = plan.used, ctx.batch_size
    for c in ctx.bar(job.todo(), "rFID", unit="batch"):
        items = []
        for i in range(c * bs, min((c + 1) * bs, n)):
            try:
                items.append(dataset.load(i, 0))
            except Exception as e:  # noqa: BLE001 - unreadable images are counted and named
                skipped.append(f"{dataset.source.records[i].name} ({type(e).__name__}: {e})")
        if not items:
            job.save(c, {"ids": np.zeros((0, max(plan.lengths)), np.int64)})  # done, nothing to merge
            continue
        x = torch.stack(items).to(tokenizer.device)
        job.save(
            c, reconstruction_batch(tokenizer, x, plan.tokens, ctx.inception, plan.pixel_dtype, None, plan.metrics)
        )
    job.note_skipped(skipped)


def _summary(merged: dict[str, np.ndarray], tokenizer: Tokenizer, plan: _Plan) -> dict[str, Any]:
    """The numbers of one length, or of every length (``rate_curve``) with the longest at the top level."""
    if not plan.curve:
        result = summarize_reconstruction(merged, tokenizer.codebook_size, metrics=plan.metrics)
        return {"rfid": result.pop("rfid", None), **result}
    rows = []
    for t in plan.lengths:
        row = summarize_reconstruction(prefix_arrays(merged, t), tokenizer.codebook_size, metrics=plan.metrics)
        rows.append({"tokens": t, "rfid": row.pop("rfid", None), **row})
    result = {k: v for k, v in rows[-1].items() if k != "tokens"}
    result["rate_curve"] = rows
    if plan.target_psnr is not None:
        result["budget"] = budget_distribution(merged, plan.lengths, float(plan.target_psnr))
    return result


def _record(settings: dict[str, Any], ctx: EvalContext, plan: _Plan, image_size: int, got: int, job: Any) -> dict:
    """The result's ``settings``: what shaped the numbers, how each was computed, and when."""
    record = {
        **settings,
        "crop": f"torchvision Resize({image_size}, bicubic, antialias) + CenterCrop, on PIL images",
        "num_images_asked": plan.asked,
        "partial": got < plan.asked,
        "skipped_files": job.skipped(),
        "fid": FID().describe(RECONSTRUCTION),
        "inception_score": InceptionScore().describe(RECONSTRUCTION),
    }
    for m in plan.metrics:
        if m.optional and m.describe(RECONSTRUCTION):
            record[m.name] = m.describe(RECONSTRUCTION)
    return record | {"processes": ctx.processes.world, "date": now()}


def reconstruct_dataset(
    ctx: EvalContext,
    tokenizer: Tokenizer,
    source: ImageSource,
    out: Path,
    tokens: int | str | Sequence[int] | None = None,
    num_images: int | None = None,
    metrics: list[Metric] | None = None,
    pixel_dtype: torch.dtype = torch.float32,
    target_psnr: float | None = None,
) -> dict[str, Any] | None:
    """The protocol over ``ctx`` (see :func:`evaluate_reconstruction`); the result on the main process."""
    plan = _plan(
        ctx, tokenizer, source, tokens, num_images, metrics or reconstruction_metrics(), pixel_dtype, target_psnr
    )
    settings = _settings(ctx, tokenizer, source, plan)
    job = ctx.work(out, settings, math.ceil(plan.used / ctx.batch_size))
    t0 = time.perf_counter()
    _run_chunks(ctx, tokenizer, ImageDataset(source, tokenizer.config.image_size, train=False), job, plan)
    merged = ctx.merge(job)
    if merged is None:
        return None
    got, skipped = int(merged["ids"].shape[0]), job.skipped()
    if got < plan.asked and not ctx.allow_partial:
        raise EvaluationError(
            f"only {got} of {plan.asked} images could be evaluated ({len(skipped)} unreadable, e.g. {skipped[:2]}); "
            f"refusing to report (pass {field('allow_partial')} to accept it)"
        )
    result = _summary(merged, tokenizer, plan)
    record = _record(settings, ctx, plan, tokenizer.config.image_size, got, job)
    result["settings"] = record | {"seconds": time.perf_counter() - t0, "versions": versions()}
    write_json(out, result)
    if plan.curve:
        plot_rate_curve(out.with_suffix(".png"), result["rate_curve"])
    return result


@torch.no_grad()
def evaluate_reconstruction(
    tokenizer: Tokenizer,
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
    metrics: Sequence[str | Metric] = (),
) -> dict[str, Any] | None:
    """rFID, PSNR, SSIM, codebook usage and entropy of ``tokenizer`` on ``source``; writes ``out`` (JSON).

    ``tokens``: one prefix length (default: all tokens), or ``"all"`` / a list for the rate curve -- every length in
    one pass (each batch encoded once, each prefix decoded), as ``rate_curve`` in the JSON (and ``OUT.png`` when
    matplotlib is installed), the top-level numbers being those of the longest; with ``target_psnr``, also the
    distribution of the shortest prefix meeting it per image. ``pixel_dtype``: the CNN pixel decoder's precision.
    ``processes``: the processes of a torchrun launch (chunk k done by process k mod world); None for one. ``lpips``: an
    LPIPS network (:func:`restok.models.layers.perceptual.build_lpips`) to score LPIPS-VGG too (None: not measured);
    ``metrics``: optional metrics by name (``"kid"``) or instance."""
    options = EvalOptions(batch_size=batch_size, allow_partial=allow_partial)
    ctx = EvalContext(processes, tokenizer.device, inception, options)
    chosen = reconstruction_metrics(lpips, metrics)
    return reconstruct_dataset(ctx, tokenizer, source, Path(out), tokens, num_images, chosen, pixel_dtype, target_psnr)
