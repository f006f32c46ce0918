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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..runtime.chunks import ChunkJob
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

__all__ = [
    "LABEL_ORDER",
    "generation_labels",
    "generation_metrics",
    "evaluate_generation",
    "generate_and_score",
    "GenerationJob",
]

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


def _recipe(generator: HARGenerator, sampling: Any) -> SamplingConfig:
    """The sampling recipe of an evaluation (see :func:`evaluate_generation`'s ``sampling``)."""
    if isinstance(sampling, SamplingConfig):
        return sampling
    recipe, changes = sampling if isinstance(sampling, tuple) else (None, sampling or {})
    try:
        return SamplingConfig.resolve(recipe, generator.generation_config, **changes)
    except ValueError as e:
        raise ValueError(f"sampling: {e}") from None


class GenerationJob:
    """One generation evaluation, as :meth:`EvalContext.evaluate` runs it: its plan (how many samples of which
    classes, the recipe, the metrics) and the settings that shape its chunks, made when it is built; then how one
    chunk of samples is made and scored by the Inception, and the result from the merged chunks."""

    description = "gFID samples"  # the progress bar's
    keep_apart = ("images",)  # written to the sample file chunk by chunk, never merged in memory

    def __init__(
        self,
        ctx: EvalContext,
        num_samples: int | None,
        per_class: int,
        seed: int,
        sampling: Any,
        metrics: list[Metric],
        autocast_dtype: torch.dtype | None,
        pixel_dtype: torch.dtype,
        keep_images: bool,
        compile: bool,
        reference: str | Path,
        out: Path,
        save_samples: str | Path | None,
    ) -> None:
        self.out, self.save_samples, self.t0 = out, save_samples, time.perf_counter()
        gen, tok = ctx.generator, ctx.tokenizer
        sp = _recipe(gen, sampling)
        self.num_classes = gen.config.num_classes
        self.total = num_samples if num_samples is not None else per_class * self.num_classes
        if self.total < 1:
            raise EvaluationError(f"nothing to sample: {self.total} samples asked")
        self.ctx, self.seed, self.metrics, self.keep_images = ctx, seed, metrics, keep_images
        self.labels = generation_labels(self.total, self.num_classes)
        self.make = _Sampling(gen, tok, sp, autocast_dtype, pixel_dtype, compile)
        self.n_chunks = math.ceil(self.total / ctx.batch_size)
        self.settings = {  # what shapes the chunks: a work folder written under other settings is refused
            "protocol": PROTOCOL_VERSION,
            "task": "generation",
            "num_samples": self.total,
            "batch_size": ctx.batch_size,
            "seed": seed,
            "sampling": sp.to_dict(),
            "generator": gen.identity(),
            "tokenizer": tok.identity(),
            "inception": ctx.inception.identity(),
            "precision": str(next(gen.parameters()).dtype),
            "autocast": None if autocast_dtype is None else str(autocast_dtype),
            "pixel_decoder_dtype": str(pixel_dtype),
            "save_images": keep_images,
            "compile": bool(compile),
        }
        self.sampling_seconds = 0.0
        self.reference_path = reference
        # the reference is read now, on the process that scores: a file that lacks what a metric needs fails before
        # any sample is drawn, not after hours
        self.reference = load_reference(reference, ctx.inception) if ctx.processes.main else None

    def chunk(self, c: int) -> dict[str, np.ndarray]:
        """Chunk ``c``: its samples (seeded by chunk), their Inception features and logits (and the images)."""
        bs = self.ctx.batch_size
        labels = self.labels[c * bs : (c + 1) * bs].to(self.make.gen.device)  # (B,)
        t = time.perf_counter()
        u8 = self.make.images(labels, derive_seed(self.seed, "chunk", c) % (2**63))  # (B, 3, H, W)
        self.sampling_seconds += time.perf_counter() - t
        feats, logits = self.ctx.inception(u8)
        arrays = {
            "features": feats.cpu().numpy(),
            "labels": labels.cpu().numpy(),
            "logits": logits.cpu().numpy() if logits is not None else np.zeros((len(labels), 0)),
        }
        if self.keep_images:
            arrays["images"] = u8.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
        return arrays

    def skipped(self) -> list[str]:
        """Samples are never unreadable."""
        return []

    def numbers(self, merged: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, Any]:
        """Each metric's numbers in result order (gFID in ADM's argument order: sample, reference), the sample count
        after precision/recall."""
        inputs = {"fake_features": merged["features"], "logits": merged["logits"], "reference": ref}
        n = int(merged["features"].shape[0])
        out: dict[str, Any] = {}
        for m in self.metrics:
            if m.position > 50 and "num_samples" not in out:
                out["num_samples"] = n
            out.update(m.compute(inputs, GENERATION))
        out.setdefault("num_samples", n)
        return out

    def finish(self, merged: dict[str, np.ndarray], work: ChunkJob) -> dict[str, Any]:
        """Score the samples against the reference, write the result file (and the sample file), refusing too few
        samples (unless allowed) or chunks out of sample order."""
        out, save_samples = self.out, self.save_samples
        got = int(merged["features"].shape[0])
        if got < self.total and not self.ctx.allow_partial:
            raise EvaluationError(
                f"only {got} of {self.total} samples exist; refusing to report (pass {field('allow_partial')})"
            )
        if not np.array_equal(merged["labels"], self.labels[:got].numpy()):
            raise EvaluationError(f"the chunks in {work.work} are not in sample order; delete it and run again")
        ref, reference = self.reference, self.reference_path
        result = self.numbers(merged, ref)
        if save_samples is not None:
            write_sample_batch(save_samples, (work.load(k)["images"] for k in range(work.n_chunks)), merged["labels"])
        result["settings"] = self._record(got, reference, ref, save_samples) | {
            "seconds": time.perf_counter() - self.t0,
            "sampling_seconds_this_process": self.sampling_seconds,
            "versions": versions(),
        }
        write_json(out, result)
        return result

    def _record(self, got: int, reference: str | Path, ref: dict[str, np.ndarray], save_samples: Any) -> dict:
        """The result's ``settings``: what shaped the numbers, how each was computed and where the files are."""
        record = {
            **self.settings,
            "num_samples_asked": self.total,
            "per_class": self.total / self.num_classes,
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
        record |= {m.name: m.describe(GENERATION) for m in self.metrics if m.optional and m.describe(GENERATION)}
        return record | {"processes": self.ctx.processes.world, "date": now()}


def generate_and_score(
    ctx: EvalContext,
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
    """The generation protocol over ``ctx`` -- its generator and tokenizer (see :func:`evaluate_generation`); the
    result on the main process (None elsewhere)."""
    keep = save_images or save_samples is not None
    chosen = generation_metrics(metrics)
    plan = (num_samples, per_class, seed, sampling, chosen, autocast_dtype, pixel_dtype, keep, compile, reference)
    evaluation = GenerationJob(ctx, *plan, out, save_samples)
    return ctx.evaluate(out, evaluation)


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
    options = EvalOptions(batch_size=batch_size, allow_partial=allow_partial)
    ctx = EvalContext(processes, generator.device, inception, options, tokenizer=tokenizer, generator=generator)
    return generate_and_score(
        ctx,
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
