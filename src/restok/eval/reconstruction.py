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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.datasets import ImageDataset
from ..data.records import ImageSource
from ..runtime.chunks import ChunkJob
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
    "ReconstructionJob",
]

RATE_CURVE = "all"  # --tokens all: every prefix length the tokenizer decodes, in one pass
_FEATURES = frozenset({"real_features", "fake_features", "logits"})


def reconstruction_metrics(lpips: torch.nn.Module | None = None, extra: Sequence[str | Metric] = ()) -> list[Metric]:
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
    lpips: torch.nn.Module | None = None,
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


class ReconstructionJob:
    """One reconstruction evaluation, as :meth:`EvalContext.evaluate` runs it: its plan (the lengths, a rate curve or
    one, the images, the metrics) and the settings that shape its chunks, made when it is built; then how one chunk
    is computed, and the result from the merged chunks."""

    description = "rFID"  # the progress bar's
    keep_apart = ()  # every array of the chunks is merged

    def __init__(
        self,
        ctx: EvalContext,
        out: Path,
        tokens: int | str | Sequence[int] | None,
        num_images: int | None,
        metrics: list[Metric],
        pixel_dtype: torch.dtype = torch.float32,
        target_psnr: float | None = None,
        then: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.ctx, self.metrics, self.pixel_dtype, self.target_psnr = ctx, metrics, pixel_dtype, target_psnr
        self.then = then  # what the result feeds once written (a comparison's table)
        self.out, self.t0 = out, time.perf_counter()
        source = ctx.source  # a wrong data path fails before any model is loaded
        tok = ctx.tokenizer
        self.lengths, self.curve = token_lengths(tok, tokens)
        if target_psnr is not None and not self.curve:
            raise EvaluationError(f"a PSNR target needs the rate curve: pass {field('tokens')} all")
        available = len(source)
        self.asked = num_images or available
        if self.asked > available and not ctx.allow_partial:
            raise EvaluationError(
                f"asked for {self.asked} images but the data has {available}; refusing to report a number on fewer "
                f"(pass {field('allow_partial')} to accept it)"
            )
        self.used = min(self.asked, available)
        self.n_chunks = math.ceil(self.used / ctx.batch_size)
        self.settings = {  # what shapes the chunks: a work folder written under other settings is refused
            "protocol": PROTOCOL_VERSION,
            "task": "reconstruction",
            "tokens": self.lengths if self.curve else self.lengths[-1],
            "num_images": self.used,
            "batch_size": ctx.batch_size,
            "data": source.description,
            "tokenizer": tok.identity(),
            "inception": ctx.inception.identity(),
            "precision": str(next(tok.parameters()).dtype),
            "pixel_decoder_dtype": str(pixel_dtype),
        }
        # only metrics whose per-image arrays depend on more than this: other work folders keep resuming
        self.settings |= {m.name: m.work_identity() for m in metrics if m.work_identity() is not None}
        self.unreadable: list[str] = []
        self.dataset: ImageDataset | None = None

    def chunk(self, c: int) -> dict[str, np.ndarray]:
        """Chunk ``c``: its readable images reconstructed and scored (unreadable ones named)."""
        ctx, tok = self.ctx, self.ctx.tokenizer
        if self.dataset is None:
            self.dataset = ImageDataset(ctx.source, tok.config.image_size, train=False)
        items = []
        for i in range(c * ctx.batch_size, min((c + 1) * ctx.batch_size, self.used)):
            try:
                items.append(self.dataset.load(i, 0))
            except Exception as e:  # noqa: BLE001 - unreadable images are counted and named
                self.unreadable.append(f"{self.dataset.source.records[i].name} ({type(e).__name__}: {e})")
        if not items:
            return {"ids": np.zeros((0, max(self.lengths)), np.int64)}  # done, nothing to merge
        x = torch.stack(items).to(tok.device)
        tokens = self.lengths if self.curve else self.lengths[-1]
        return reconstruction_batch(tok, x, tokens, ctx.inception, self.pixel_dtype, None, self.metrics)

    def skipped(self) -> list[str]:
        """The images of this process's chunks that could not be read."""
        return self.unreadable

    def numbers(self, merged: dict[str, np.ndarray]) -> dict[str, Any]:
        """The numbers of one length, or of every length (``rate_curve``) with the longest at the top level."""
        size = self.ctx.tokenizer.codebook_size
        if not self.curve:
            result = summarize_reconstruction(merged, size, metrics=self.metrics)
            return {"rfid": result.pop("rfid", None), **result}
        rows = []
        for t in self.lengths:
            row = summarize_reconstruction(prefix_arrays(merged, t), size, metrics=self.metrics)
            rows.append({"tokens": t, "rfid": row.pop("rfid", None), **row})
        result = {k: v for k, v in rows[-1].items() if k != "tokens"}
        result["rate_curve"] = rows
        if self.target_psnr is not None:
            result["budget"] = budget_distribution(merged, self.lengths, float(self.target_psnr))
        return result

    def finish(self, merged: dict[str, np.ndarray], work: ChunkJob) -> dict[str, Any]:
        """The numbers, with the settings that shaped them and how each was computed, written to the result file (and
        the rate curve's plot); a partial count is refused unless allowed."""
        out, skipped, got = self.out, work.skipped(), int(merged["ids"].shape[0])
        if got < self.asked and not self.ctx.allow_partial:
            raise EvaluationError(
                f"only {got} of {self.asked} images could be evaluated ({len(skipped)} unreadable, e.g. "
                f"{skipped[:2]}); refusing to report (pass {field('allow_partial')} to accept it)"
            )
        result = self.numbers(merged)
        size = self.ctx.tokenizer.config.image_size
        record = {
            **self.settings,
            "crop": f"torchvision Resize({size}, bicubic, antialias) + CenterCrop, on PIL images",
            "num_images_asked": self.asked,
            "partial": got < self.asked,
            "skipped_files": skipped,
            "fid": FID().describe(RECONSTRUCTION),
            "inception_score": InceptionScore().describe(RECONSTRUCTION),
        }
        record |= {
            m.name: m.describe(RECONSTRUCTION) for m in self.metrics if m.optional and m.describe(RECONSTRUCTION)
        }
        record |= {"processes": self.ctx.processes.world, "date": now(), "seconds": time.perf_counter() - self.t0}
        result["settings"] = record | {"versions": versions()}
        if self.curve:
            plot_rate_curve(out.with_suffix(".png"), result["rate_curve"])
        write_json(out, result)
        if self.then is not None:
            self.then(result)
        return result


def reconstruct_dataset(
    ctx: EvalContext,
    out: Path,
    tokens: int | str | Sequence[int] | None = None,
    num_images: int | None = None,
    metrics: list[Metric] | None = None,
    pixel_dtype: torch.dtype = torch.float32,
    target_psnr: float | None = None,
) -> dict[str, Any] | None:
    """The protocol over ``ctx`` -- its data and tokenizer (see :func:`evaluate_reconstruction`); the result on the
    main process (None elsewhere)."""
    evaluation = ReconstructionJob(
        ctx, out, tokens, num_images, metrics or reconstruction_metrics(), pixel_dtype, target_psnr
    )
    return ctx.evaluate(out, evaluation)


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
    lpips: torch.nn.Module | None = None,
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
    ctx = EvalContext(processes, tokenizer.device, inception, options, data=source, tokenizer=tokenizer)
    chosen = reconstruction_metrics(lpips, metrics)
    return reconstruct_dataset(ctx, Path(out), tokens, num_images, chosen, pixel_dtype, target_psnr)
