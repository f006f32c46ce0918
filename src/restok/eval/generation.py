"""The generation protocol (the official ``sample_c2i_ddp_cfg_search.py`` + the ADM evaluator): gFID, Inception Score
and precision/recall of a generator's samples against a reference batch.

Sample i has class ``i mod C`` (``list(range(C)) * per_class``: every class once, then again), kept in that order
whatever the batch size or process count; samples are converted as ``clamp(255 x, 0, 255).to(uint8)``; FID against the
reference ``mu``/``sigma`` (e.g. ADM's ``VIRTUAL_imagenet256_labeled.npz``) with ``sqrtm``; precision/recall (k = 3)
against the reference activations; Inception Score as the ADM evaluator computes it (consecutive splits of 5,000 in
sample order, one split below 5,000) when the Inception has logits. ``save_samples`` writes exactly the scored images,
in that order, as an ADM sample batch for the ADM TensorFlow evaluator. Chunk seeds depend only on (seed, chunk).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runtime.files import write_json
from ..runtime.precision import autocast_to
from ..runtime.processes import Processes
from ..runtime.progress import progress
from ..runtime.seeds import derive_seed
from ..sampling import CompiledDecoder, CompiledSampler, SamplingConfig
from .inception import InceptionFeatures
from .metrics import (
    ADM_IS_SPLIT,
    default_fid_method,
    feature_statistics,
    frechet_distance,
    inception_score,
    precision_recall,
)
from .protocol import PROTOCOL_VERSION, EvaluationError, merge_work, now, open_work, versions
from .references import load_reference, statistics_sha256, write_sample_batch

__all__ = ["LABEL_ORDER", "generation_labels", "evaluate_generation"]

LABEL_ORDER = "sample i has class i mod num_classes (the official sampling script's list(range(C)) * per_class)"


def generation_labels(total: int, num_classes: int) -> torch.Tensor:
    """Class of every sample, in sample order: ``i mod num_classes`` (the official sampling script's
    ``list(range(C)) * per_class``), so any 5,000 consecutive samples of ImageNet hold every class 5 times."""
    return torch.arange(total) % num_classes


class _Sampling:
    """How one batch of samples is made: the recipe, precisions, and (``compile``) the compiled steps and decode, kept
    for the whole evaluation (one sampler per batch size)."""

    def __init__(
        self,
        generator: Any,
        tokenizer: Any,
        sp: SamplingConfig,
        autocast_dtype: torch.dtype | None,
        pixel_dtype: torch.dtype,
        compile: bool,
    ) -> None:
        self.gen, self.tok, self.sp = generator, tokenizer, sp
        self.autocast_dtype, self.pixel_dtype, self.compile = autocast_dtype, pixel_dtype, compile
        self.samplers: dict[int, CompiledSampler] = {}
        self.decoder = CompiledDecoder(tokenizer) if compile else None

    def images(self, labels: torch.Tensor, seed: int) -> torch.Tensor:
        """uint8 samples (B, 3, H, W) of ``labels`` from a generator seeded with ``seed``."""
        g = torch.Generator(self.gen.device).manual_seed(seed)
        sampler = None
        if self.compile:
            rows = len(labels) * (2 if self.sp.cfg_scale > 1.0 else 1)
            if rows not in self.samplers:
                self.samplers[rows] = CompiledSampler(self.gen, rows)
            sampler = self.samplers[rows]
        with autocast_to(self.gen.device, self.autocast_dtype):
            ids = self.gen.generate(labels, self.sp, generator=g, sampler=sampler)  # (B, L)
            if self.decoder is not None:
                images = self.decoder(ids, ids.shape[1], self.pixel_dtype)
            else:
                images = self.tok.decode(ids, self.pixel_dtype)  # (B, 3, H, W) in [0, 1]
        return (images * 255).clamp(0, 255).to(torch.uint8)  # official PNG conversion (truncation)


def _sample_chunks(
    make: _Sampling,
    inception: InceptionFeatures,
    job: Any,
    labels_all: torch.Tensor,
    batch_size: int,
    seed: int,
    keep_images: bool,
    processes: Processes,
) -> float:
    """This process's chunks: samples, their Inception features and logits; returns the seconds spent sampling."""
    gen_time = 0.0
    for c in progress(job.todo(), "gFID samples", enabled=processes.shows_progress, unit="batch"):
        labels = labels_all[c * batch_size : (c + 1) * batch_size].to(make.gen.device)  # (B,)
        t = time.perf_counter()
        u8 = make.images(labels, derive_seed(seed, "chunk", c) % (2**63))  # (B, 3, H, W)
        gen_time += time.perf_counter() - t
        feats, logits = inception(u8)
        arrays = {
            "features": feats.cpu().numpy(),
            "labels": labels.cpu().numpy(),
            "logits": logits.cpu().numpy() if logits is not None else np.zeros((len(labels), 0)),
        }
        if keep_images:
            arrays["images"] = u8.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
        job.save(c, arrays)
    return gen_time


def _scores(merged: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, Any]:
    """gFID (ADM's argument order: sample, reference), precision/recall and, with logits, the Inception Score."""
    mu, sigma = feature_statistics(merged["features"])
    result: dict[str, Any] = {"gfid": frechet_distance(mu, sigma, ref["mu"], ref["sigma"], method=default_fid_method())}
    pr = precision_recall(ref["activations"], merged["features"], k=3)
    result.update(precision=pr["precision"], recall=pr["recall"], num_samples=int(merged["features"].shape[0]))
    if merged["logits"].shape[1] > 0:
        result["inception_score"], result["inception_score_std"] = inception_score(merged["logits"], ADM_IS_SPLIT)
    return result


def _checked(
    merged: dict[str, np.ndarray], labels_all: torch.Tensor, total: int, allow_partial: bool, work: Path
) -> int:
    """The number of samples, refusing too few (unless ``allow_partial``) or chunks out of sample order."""
    got = int(merged["features"].shape[0])
    if got < total and not allow_partial:
        raise EvaluationError(f"only {got} of {total} samples exist; refusing to report (pass --allow-partial)")
    if not np.array_equal(merged["labels"], labels_all[:got].numpy()):
        raise EvaluationError(f"the chunks in {work} are not in sample order; delete it and run again")
    return got


def _recipe(generator: Any, sampling: Any) -> SamplingConfig:
    """The sampling recipe of an evaluation (see :func:`evaluate_generation`'s ``sampling``)."""
    if isinstance(sampling, SamplingConfig):
        return sampling
    recipe, changes = sampling if isinstance(sampling, tuple) else (None, sampling or {})
    try:
        return SamplingConfig.resolve(recipe, generator.generation_config, **changes)
    except ValueError as e:
        raise ValueError(f"sampling: {e}") from None


def _record(
    settings: dict[str, Any],
    total: int,
    C: int,
    got: int,
    reference: str | Path,
    ref: dict[str, np.ndarray],
    save_samples: str | Path | None,
    processes: Processes,
    seconds: float,
    gen_time: float,
) -> dict[str, Any]:
    """The result's ``settings``: what shaped the numbers, how each was computed, where the files are, and timings."""
    return {
        **settings,
        "num_samples_asked": total,
        "per_class": total / C,
        "labels": LABEL_ORDER,
        "inception_score": f"ADM evaluator: mean (and std) over consecutive splits of {ADM_IS_SPLIT} in sample order"
        + (f"; one split of {got} here" if got <= ADM_IS_SPLIT else ""),
        "fid": "scipy sqrtm of sigma_sample @ sigma_ref (ADM evaluator)"
        if default_fid_method() == "sqrtm"
        else "eigh (SciPy missing)",
        "chunk_seeds": "derive_seed(seed, 'chunk', k) per batch k",
        "reference": {
            "path": str(Path(reference).resolve()),
            "num_images": int(ref["activations"].shape[0]),
            "statistics_sha256": statistics_sha256(ref["mu"], ref["sigma"]),
        },
        "samples_file": None if save_samples is None else str(Path(save_samples).resolve()),
        "processes": processes.world,
        "date": now(),
        "seconds": seconds,
        "sampling_seconds_this_process": gen_time,
        "versions": versions(),
    }


@torch.no_grad()
def evaluate_generation(
    generator: Any,
    tokenizer: Any,
    inception: InceptionFeatures,
    reference: str | Path,
    out: str | Path,
    num_samples: int | None = None,
    per_class: int = 50,
    batch_size: int = 32,
    seed: int = 0,
    sampling: SamplingConfig | dict[str, Any] | tuple[str | None, dict[str, Any]] | None = None,
    allow_partial: bool = False,
    processes: Processes | None = None,
    save_images: bool = False,
    autocast_dtype: torch.dtype | None = None,
    pixel_dtype: torch.dtype = torch.float32,
    save_samples: str | Path | None = None,
    compile: bool = False,
) -> dict[str, Any] | None:
    """gFID, precision/recall and (with logits) IS of ``per_class`` samples per class; writes ``out`` (JSON).

    ``sampling``: the recipe -- a config, a dict of changes to the generator's own, or ``(preset or JSON file or None,
    changes)`` as the command line names it (default: the generator's own). ``compile``: sample and decode
    through compiled steps (recorded in the settings: a compiled kernel's rounding may change a rare token, so a
    resume does not mix the two). ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs sampling and the tokenizer's
    transformer under autocast; ``pixel_dtype`` is the CNN pixel decoder's precision (float32 by default, as the
    official code). ``save_samples``: also write the scored images, in sample order, as an ADM sample batch ``.npz``.
    ``processes``: the processes of a torchrun launch (chunk k done by process k mod world); None for one.
    """
    processes = processes or Processes()
    out = Path(out)
    sp = _recipe(generator, sampling)
    C = generator.config.num_classes
    total = num_samples if num_samples is not None else per_class * C
    if total < 1:
        raise EvaluationError(f"nothing to sample: {total} samples asked")
    labels_all = generation_labels(total, C)
    keep_images = save_images or save_samples is not None
    settings = {
        "protocol": PROTOCOL_VERSION,
        "task": "generation",
        "num_samples": total,
        "batch_size": batch_size,
        "seed": seed,
        "sampling": sp.to_dict(),
        "generator": generator.identity(),
        "tokenizer": tokenizer.identity(),
        "inception": inception.identity(),
        "precision": str(next(generator.parameters()).dtype),
        "autocast": None if autocast_dtype is None else str(autocast_dtype),
        "pixel_decoder_dtype": str(pixel_dtype),
        "save_images": keep_images,
        "compile": bool(compile),
    }
    job = open_work(out, settings, math.ceil(total / batch_size), processes)
    t0 = time.perf_counter()
    make = _Sampling(generator, tokenizer, sp, autocast_dtype, pixel_dtype, compile)
    gen_time = _sample_chunks(make, inception, job, labels_all, batch_size, seed, keep_images, processes)
    merged = merge_work(job, processes, skip=("images",))
    if merged is None:
        return None
    got = _checked(merged, labels_all, total, allow_partial, job.work)
    ref = load_reference(reference, inception)
    result = _scores(merged, ref)
    if save_samples is not None:
        write_sample_batch(save_samples, (job.load(k)["images"] for k in range(job.n_chunks)), merged["labels"])
    result["settings"] = _record(
        settings, total, C, got, reference, ref, save_samples, processes, time.perf_counter() - t0, gen_time
    )
    write_json(out, result)
    return result
