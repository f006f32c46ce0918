"""Folders of samples: what ``restok generate`` and ``restok vary`` write, as keyword-only requests that the command
line fills in, and one job per request over the job's :class:`~restok.models.resources.Resources` (the generator and
the tokenizer it samples for, loaded on first use): resolve the classes and the recipe, sample, decode, write every
file with a manifest of every setting. The sampling itself is :class:`ResTokPipeline`'s, the Python API's."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..data.classes import resolve_classes
from ..data.images import load_image, make_grid, sample_grid, save_image
from ..models.resources import Resources
from ..runtime.files import write_json
from ..runtime.precision import DTYPES, autocast_to
from ..runtime.requests import RequestError
from ..runtime.requests import field as field_name
from ..runtime.version import __version__
from ..sampling import SamplingConfig
from .restok_pipeline import ResTokPipeline

__all__ = ["SampleRequest", "write_samples", "VariationRequest", "write_variations"]


def _recipe(sampling: str | None, changes: Mapping[str, Any], default: SamplingConfig) -> SamplingConfig:
    """The recipe a request names (a preset, a JSON file, or None for the generator's own) with its changes."""
    try:
        return SamplingConfig.resolve(sampling, default, **changes)
    except ValueError as e:
        raise ValueError(f"sampling: {e}") from None


def _classes(classes: Any, num_classes: int) -> list[int]:
    """Class ids from the ``classes`` a request names, or a RequestError naming the field."""
    try:
        return resolve_classes(classes, num_classes)
    except ValueError as e:
        raise RequestError(f"{field_name('classes')}: {e}") from None


# ------------------------------------------------------------------------------------------- generate
@dataclass(frozen=True, kw_only=True)
class SampleRequest:
    """What ``restok generate`` asks for: the models, the classes, the recipe (a preset, a JSON file, or None for the
    generator's own, with ``changes``), the seed, where and how to run, and the output folder."""

    tokenizer: str
    generator: str
    classes: tuple[str, ...]
    out: Path
    per_class: int = 1
    sampling: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 16
    num_tokens: int | None = None
    progressive: bool = False
    device: str = "auto"
    dtype: str = "fp32"
    pixel_dtype: str = "fp32"
    compile: bool = False
    progress: bool = True


class SampleJob:
    """One ``generate``: the classes and recipe resolved when it is built, then the samples drawn and written."""

    def __init__(self, req: SampleRequest) -> None:
        if req.per_class < 1:
            raise RequestError(f"{field_name('per_class')} must be >= 1")
        self.req = req
        res = Resources(req.device, tokenizer=req.tokenizer, generator=req.generator)
        self.gen, self.tok = res.generator, res.tokenizer
        if req.num_tokens is not None and req.num_tokens not in self.tok.prefix_lengths:
            raise RequestError(
                f"{field_name('num_tokens')} {req.num_tokens} is not a prefix length of the tokenizer; choose one of "
                f"{list(self.tok.prefix_lengths)}"
            )
        self.classes = _classes(req.classes, self.gen.config.num_classes)
        self.labels = [c for c in self.classes for _ in range(req.per_class)]
        self.sampling = _recipe(req.sampling, req.changes, self.gen.generation_config)

    def _draw(self) -> dict[str, torch.Tensor]:
        """Every image (and progressive strip), batch after batch from one seeded generator, by file name."""
        req, pipe, files = self.req, ResTokPipeline(self.tok, self.gen), {}
        steps: dict[int, list[torch.Tensor]] = {}
        callback = (lambda b, s, seq, end: steps.setdefault(b, []).append(seq.clone())) if req.progressive else None
        pixel_dtype, bs = DTYPES[req.pixel_dtype], req.batch_size
        with autocast_to(pipe.device, DTYPES[req.dtype]):
            ids = pipe.generate_ids(
                self.labels,
                1,
                sampling=self.sampling,
                seed=req.seed,
                num_tokens=req.num_tokens,
                batch_size=bs,
                callback=callback,
                compile=req.compile,
                progress=req.progress,
            )  # (N, num_tokens)
            images = torch.cat([self.tok.decode(b, pixel_dtype, compile=req.compile).cpu() for b in ids.split(bs)])
            for n, label in enumerate(self.labels):
                files[f"{n:06d}_class{label}.png"] = images[n]
                if req.progressive:
                    strip = self._strip(steps[n // bs], n % bs, pixel_dtype)
                    files[f"{n:06d}_class{label}_progressive.png"] = strip
        return files

    def _strip(self, steps: list[torch.Tensor], j: int, pixel_dtype: torch.dtype) -> torch.Tensor:
        """What sample ``j`` decodes to after each step that completes a prefix, coarse to fine, as one strip."""
        ends = [int(s.shape[1]) for s in steps]
        tok = self.tok
        frames = [
            tok.decode(steps[ends.index(k)][j : j + 1], pixel_dtype)[0].cpu() for k in tok.prefix_lengths if k in ends
        ]
        return make_grid(frames, nrow=len(frames))

    def run(self) -> dict[str, Any]:
        """Sample, write every image, ``grid.png`` and ``manifest.json``; returns the manifest."""
        req, gen, tok = self.req, self.gen, self.tok
        t0 = time.perf_counter()
        files = self._draw()
        seconds = time.perf_counter() - t0
        calls = sum(1 for _, e in gen.step_positions if e <= (req.num_tokens or gen.num_tokens))
        names = [f"{n:06d}_class{c}.png" for n, c in enumerate(self.labels)]
        files["grid.png"] = sample_grid(torch.stack([files[name] for name in names]), req.per_class)
        settings = {
            **self.sampling.to_dict(),
            "seed": req.seed,
            "batch_size": req.batch_size,
            "dtype": req.dtype,
            "pixel_dtype": req.pixel_dtype,
            "device": str(tok.device),
            "per_class": req.per_class,
            "classes": self.classes,
            "num_tokens": req.num_tokens or gen.num_tokens,
            "num_model_calls": calls,
            "compile": req.compile,
        }
        manifest = {
            "restok_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(),
            "settings": settings,
            "generator": gen.identity(),
            "tokenizer": tok.identity(),
            "images": [{"file": name, "class": c} for name, c in zip(names, self.labels)],
            "seconds": round(seconds, 3),
        }
        for name, image in files.items():
            save_image(image, Path(req.out) / name)
        write_json(Path(req.out) / "manifest.json", manifest)
        return manifest


def write_samples(req: SampleRequest) -> dict[str, Any]:
    """Sample ``req.per_class`` images of each class and write them, ``grid.png`` and ``manifest.json`` (every setting,
    the seed, the models' sources and SHA-256) to ``req.out``; returns the manifest."""
    job = SampleJob(req)
    return job.run()


# ------------------------------------------------------------------------------------------- vary
@dataclass(frozen=True, kw_only=True)
class VariationRequest:
    """What ``restok vary`` asks for: an image whose first ``keep`` tokens are kept, the class and number of
    variations, the recipe and seed, where to run and write."""

    tokenizer: str
    generator: str
    image: Path
    keep: int
    classes: str
    out: Path
    num: int = 8
    sampling: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    dtype: str = "fp32"
    pixel_dtype: str = "fp32"


class VariationJob:
    """One ``vary``: the kept prefix, the class and the recipe resolved when it is built, then the variations drawn
    (by :meth:`ResTokPipeline.vary_ids`) and written."""

    def __init__(self, req: VariationRequest) -> None:
        if req.num < 1:
            raise RequestError(f"{field_name('num')} must be >= 1")
        self.req = req
        res = Resources(req.device, tokenizer=req.tokenizer, generator=req.generator)
        self.gen, self.tok = res.generator, res.tokenizer
        steps = [e for _, e in self.gen.step_positions]
        if req.keep not in steps:
            raise RequestError(
                f"{field_name('keep')} {req.keep} is not a step boundary of this generator; choose one of {steps}"
            )
        (self.label,) = _classes([req.classes], self.gen.config.num_classes)
        self.sampling = _recipe(req.sampling, req.changes, self.gen.generation_config)
        self.original = load_image(req.image, self.tok.config.image_size)  # (3, S, S)

    def run(self) -> dict[str, Any]:
        """Draw the variations; write each, the strip (original, its coarse reconstruction, the variations) and a JSON
        record; returns the record."""
        req, tok, pipe = self.req, self.tok, ResTokPipeline(self.tok, self.gen)
        pixel_dtype = DTYPES[req.pixel_dtype]
        ids = pipe.encode(self.original[None])[:, : req.keep]  # (1, keep)
        with autocast_to(tok.device, DTYPES[req.dtype]):
            out = pipe.vary_ids(ids, self.label, req.num, seed=req.seed, sampling=self.sampling)  # (num, L)
            images = tok.decode(out, pixel_dtype).cpu()  # (num, 3, S, S)
            coarse = tok.decode(ids, pixel_dtype).cpu()[0] if req.keep in tok.prefix_lengths else None
        stem = f"{Path(req.image).stem}_keep{req.keep}"
        strip = [self.original] + ([coarse] if coarse is not None else []) + list(images)
        files = {f"{stem}_{i:02d}.png": im for i, im in enumerate(images)}
        files[f"{stem}_strip.png"] = make_grid(torch.stack(strip), nrow=len(strip))
        record = {
            "image": str(req.image),
            "keep": req.keep,
            "class": self.label,
            "seed": req.seed,
            "sampling": self.sampling.to_dict(),
            "kept_ids": ids[0].tolist(),
            "generator": self.gen.identity(),
            "tokenizer": tok.identity(),
            "coarse": coarse is not None,
        }
        for name, image in files.items():
            save_image(image, Path(req.out) / name)
        write_json(Path(req.out) / f"{stem}.json", {k: v for k, v in record.items() if k != "coarse"})
        return record


def write_variations(req: VariationRequest) -> dict[str, Any]:
    """Coarse-kept variations of one image: its first ``keep`` tokens kept, the finer levels sampled; writes each, the
    strip (original, its coarse reconstruction, the variations) and a JSON record; returns the record."""
    job = VariationJob(req)
    return job.run()
