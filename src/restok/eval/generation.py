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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..runtime.files import write_json
from ..runtime.precision import autocast_to
from ..runtime.processes import Processes
from ..runtime.requests import field
from ..runtime.seeds import derive_seed
from ..sampling import CompiledDecoder, CompiledSampler, SamplingConfig
from .context import EvalContext, EvalOptions
from .inception import InceptionFeatures
from .metrics import ADM_IS_SPLIT, FID, GENERATION, InceptionScore, Metric, metric_class, metric_classes
from .protocol import PROTOCOL_VERSION, EvaluationError, now, versions
from .references import load_reference, statistics_sha256, write_sample_batch

if TYPE_CHECKING:
    from ..models.har import HARGenerator
    from ..models.tokenizer import Tokenizer

__all__ = ["LABEL_ORDER", "generation_labels", "generation_metrics", "evaluate_generation", "generate_and_score"]

LABEL_ORDER = "sample i has class i mod num_classes (the official sampling script's list(range(C)) * per_class)"


def generation_labels(total: int, num_classes: int) -> torch.Tensor:
    """Class of every sample, in sample order: ``i mod num_classes`` (the official sampling script's
    ``list(range(C)) * per_class``), so any 5,000 consecutive samples of ImageNet hold every class 5 times."""
    return torch.arange(total) % num_classes


def generation_metrics(extra: Sequence[str | Metric] = ()) -> list[Metric]:
    """The protocol's metrics in result order: gFID, precision/recall, Inception Score, and the optional ones named
    (or given) in ``extra``."""
    metrics: list[Metric] = [cls() for cls in metric_classes(GENERATION, optional=False)]
    metrics += [m if isinstance(m, Metric) else metric_class(m, GENERATION)() for m in extra]
    return sorted(metrics, key=lambda m: m.position)


class _Sampling:
    """How one batch of samples is made: the recipe, precisions, and (``compile``) the compiled steps and decode, kept
    for the whole evaluation (one sampler per batch size)."""

    def __init__(
        self,
        generator: HARGenerator,
        tokenizer: Tokenizer,
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


@dataclass(frozen=True)
class _Plan:
    """What one generation evaluation samples and scores."""

    total: int
    labels: torch.Tensor  # (total,) the class of every sample, in sample order
    seed: int
    keep_images: bool
    metrics: list[Metric]


def _sample_chunks(ctx: EvalContext, make: _Sampling, job: Any, plan: _Plan) -> float:
    """This process's chunks: samples, their Inception features and logits; returns the seconds spent sampling."""
    gen_time, bs = 0.0, ctx.batch_size
    for c in ctx.bar(job.todo(), "gFID samples", unit="batch"):
        labels = plan.labels[c * bs : (c + 1) * bs].to(make.gen.device)  # (B,)
        t = time.perf_counter()
        u8 = make.images(labels, derive_seed(plan.seed, "chunk", c) % (2**63))  # (B, 3, H, W)
        gen_time += time.perf_counter() - t
        feats, logits = ctx.inception(u8)
        arrays = {
            "features": feats.cpu().numpy(),
            "labels": labels.cpu().numpy(),
            "logits": logits.cpu().numpy() if logits is not None else np.zeros((len(labels), 0)),
        }
        if plan.keep_images:
            arrays["images"] = u8.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
        job.save(c, arrays)
    return gen_time


def _scores(merged: dict[str, np.ndarray], ref: dict[str, np.ndarray], metrics: Sequence[Metric]) -> dict[str, Any]:
    """Each metric's numbers in result order (gFID in ADM's argument order: sample, reference), the sample count
    after precision/recall."""
    inputs = {"fake_features": merged["features"], "logits": merged["logits"], "reference": ref}
    out: dict[str, Any] = {}
    for m in metrics:
        if m.position > 50 and "num_samples" not in out:
            out["num_samples"] = int(merged["features"].shape[0])
        out.update(m.compute(inputs, GENERATION))
    out.setdefault("num_samples", int(merged["features"].shape[0]))
    return out


def _checked(ctx: EvalContext, merged: dict[str, np.ndarray], plan: _Plan, work: Path) -> int:
    """The number of samples, refusing too few (unless partial results are allowed) or chunks out of sample order."""
    got = int(merged["features"].shape[0])
    if got < plan.total and not ctx.allow_partial:
        raise EvaluationError(
            f"only {got} of {plan.total} samples exist; refusing to report (pass {field('allow_partial')})"
        )
    if not np.array_equal(merged["labels"], plan.labels[:got].numpy()):
        raise EvaluationError(f"the chunks in {work} are not in sample order; delete it and run again")
    return got


def _recipe(generator: HARGenerator, sampling: Any) -> SamplingConfig:
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
    plan: _Plan,
    num_classes: int,
    got: int,
    reference: str | Path,
    ref: dict[str, np.ndarray],
    save_samples: str | Path | None,
    ctx: EvalContext,
) -> dict[str, Any]:
    """The result's ``settings``: what shaped the numbers, how each was computed and where the files are."""
    record = {
        **settings,
        "num_samples_asked": plan.total,
        "per_class": plan.total / num_classes,
        "labels": LABEL_ORDER,
        "inception_score": InceptionScore().describe(GENERATION)
        + (f"; one split of {got} here" if got <= ADM_IS_SPLIT else ""),
        "fid": FID().describe(GENERATION),
        "chunk_seeds": "derive_seed(seed, 'chunk', k) per batch k",
        "reference": {
            "path": str(Path(reference).resolve()),
            "num_images": int(ref["activations"].shape[0]),
            "statistics_sha256": statistics_sha256(ref["mu"], ref["sigma"]),
        },
        "samples_file": None if save_samples is None else str(Path(save_samples).resolve()),
    }
    for m in plan.metrics:
        if m.optional and m.describe(GENERATION):
            record[m.name] = m.describe(GENERATION)
    return record | {"processes": ctx.processes.world, "date": now()}


def _settings(
    ctx: EvalContext, make: _Sampling, plan: _Plan, autocast_dtype: torch.dtype | None, compile: bool
) -> dict[str, Any]:
    """What shapes the chunks: a work folder written under other settings is refused."""
    return {
        "protocol": PROTOCOL_VERSION,
        "task": "generation",
        "num_samples": plan.total,
        "batch_size": ctx.batch_size,
        "seed": plan.seed,
        "sampling": make.sp.to_dict(),
        "generator": make.gen.identity(),
        "tokenizer": make.tok.identity(),
        "inception": ctx.inception.identity(),
        "precision": str(next(make.gen.parameters()).dtype),
        "autocast": None if autocast_dtype is None else str(autocast_dtype),
        "pixel_decoder_dtype": str(make.pixel_dtype),
        "save_images": plan.keep_images,
        "compile": bool(compile),
    }


def _sample_and_score(
    ctx: EvalContext,
    make: _Sampling,
    plan: _Plan,
    reference: str | Path,
    out: Path,
    save_samples: str | Path | None,
    settings: dict[str, Any],
) -> dict[str, Any] | None:
    """Sample this process's chunks, then (main process) score them against ``reference`` and write ``out``."""
    job = ctx.work(out, settings, math.ceil(plan.total / ctx.batch_size))
    t0 = time.perf_counter()
    gen_time = _sample_chunks(ctx, make, job, plan)
    merged = ctx.merge(job, skip=("images",))
    if merged is None:
        return None
    got = _checked(ctx, merged, plan, job.work)
    ref = load_reference(reference, ctx.inception)
    result = _scores(merged, ref, plan.metrics)
    if save_samples is not None:
        write_sample_batch(save_samples, (job.load(k)["images"] for k in range(job.n_chunks)), merged["labels"])
    record = _record(settings, plan, make.gen.config.num_classes, got, reference, ref, save_samples, ctx)
    times = {"seconds": time.perf_counter() - t0, "sampling_seconds_this_process": gen_time}
    result["settings"] = record | times | {"versions": versions()}
    write_json(out, result)
    return result


def generate_and_score(
    ctx: EvalContext,
    generator: HARGenerator,
    tokenizer: Tokenizer,
    reference: str | Path,
    out: Path,
    *,
    num_samples: int | None = None,
    per_class: int = 50,
    seed: int = 0,
    sampling: Any = None,
    metrics: Sequence[str | Metric] = (),
    autocast_dtype: torch.dtype | None = None,
    pixel_dtype: torch.dtype = torch.float32,
    save_images: bool = False,
    save_samples: str | Path | None = None,
    compile: bool = False,
) -> dict[str, Any] | None:
    """The generation protocol over ``ctx`` (see :func:`evaluate_generation`)."""
    sp = _recipe(generator, sampling)
    C = generator.config.num_classes
    total = num_samples if num_samples is not None else per_class * C
    if total < 1:
        raise EvaluationError(f"nothing to sample: {total} samples asked")
    keep = save_images or save_samples is not None
    plan = _Plan(total, generation_labels(total, C), seed, keep, generation_metrics(metrics))
    make = _Sampling(generator, tokenizer, sp, autocast_dtype, pixel_dtype, compile)
    settings = _settings(ctx, make, plan, autocast_dtype, compile)
    return _sample_and_score(ctx, make, plan, reference, out, save_samples, settings)


@torch.no_grad()
def evaluate_generation(
    generator: HARGenerator,
    tokenizer: Tokenizer,
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
    metrics: Sequence[str | Metric] = (),
) -> dict[str, Any] | None:
    """gFID, precision/recall and (with logits) IS of ``per_class`` samples per class; writes ``out`` (JSON).

    ``sampling``: the recipe -- a config, a dict of changes to the generator's own, or ``(preset or JSON file or None,
    changes)`` as the command line names it (default: the generator's own). ``compile``: sample and decode
    through compiled steps (recorded in the settings: a compiled kernel's rounding may change a rare token, so a
    resume does not mix the two). ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs sampling and the tokenizer's
    transformer under autocast; ``pixel_dtype`` is the CNN pixel decoder's precision (float32 by default, as the
    official code). ``save_samples``: also write the scored images, in sample order, as an ADM sample batch ``.npz``.
    ``processes``: the processes of a torchrun launch (chunk k done by process k mod world); None for one.
    ``metrics``: optional metrics by name (``"kid"``) or instance.
    """
    ctx = EvalContext(
        processes, generator.device, inception, EvalOptions(batch_size=batch_size, allow_partial=allow_partial)
    )
    return generate_and_score(
        ctx,
        generator,
        tokenizer,
        reference,
        Path(out),
        num_samples=num_samples,
        per_class=per_class,
        seed=seed,
        sampling=sampling,
        metrics=metrics,
        autocast_dtype=autocast_dtype,
        pixel_dtype=pixel_dtype,
        save_images=save_images,
        save_samples=save_samples,
        compile=compile,
    )
