"""Folders of samples: what ``restok generate`` and ``restok vary`` write, as requests that the command line fills in
and one function per request that does the whole job (load the pair, resolve classes and the recipe, sample, decode,
write every file with a manifest of every setting)."""

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
from ..models.auto import load_pair
from ..runtime.files import write_json
from ..runtime.precision import DTYPES, autocast_to
from ..runtime.version import __version__
from ..sampling import SamplingConfig
from .restok_pipeline import ResTokPipeline

__all__ = ["SampleRequest", "write_samples", "VariationRequest", "write_variations"]


@dataclass(frozen=True)
class SampleRequest:
    """What ``restok generate`` asks for: the models, the classes, the recipe (a preset, a JSON file, or None for the
    generator's own, with ``changes``), the seed, where and how to run, and the output folder."""

    tokenizer: str
    generator: str
    classes: tuple[str, ...]
    out: Path
    per_class: int = 1
    recipe: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 16
    num_tokens: int | None = None
    progressive: bool = False
    device: str = "auto"
    dtype: str = "fp32"
    pixel_dtype: str = "fp32"
    compile: bool = False


def _progressive_strip(tok: Any, steps: list[torch.Tensor], j: int, pixel_dtype: torch.dtype) -> torch.Tensor:
    """What sample ``j`` decodes to after each step that completes a prefix, coarse to fine, as one strip."""
    ends = [int(s.shape[1]) for s in steps]
    frames = [
        tok.decode(steps[ends.index(k)][j : j + 1], pixel_dtype)[0].cpu() for k in tok.prefix_lengths if k in ends
    ]
    return make_grid(frames, nrow=len(frames))


def _sample_all(
    pipe: ResTokPipeline, labels: list[int], sampling: SamplingConfig, req: SampleRequest
) -> dict[str, torch.Tensor]:
    """Every image (and progressive strip), batch after batch from one seeded generator, by file name."""
    tok, files = pipe.tokenizer, {}
    steps: dict[int, list[torch.Tensor]] = {}
    callback = (lambda b, s, seq, end: steps.setdefault(b, []).append(seq.clone())) if req.progressive else None
    with autocast_to(pipe.device, DTYPES[req.dtype]):
        ids = pipe.generate_ids(
            labels,
            1,
            sampling=sampling,
            seed=req.seed,
            num_tokens=req.num_tokens,
            batch_size=req.batch_size,
            callback=callback,
            compile=req.compile,
        )  # (N, num_tokens)
        images = torch.cat(
            [tok.decode(b, DTYPES[req.pixel_dtype], compile=req.compile).cpu() for b in ids.split(req.batch_size)]
        )
        for n, label in enumerate(labels):
            files[f"{n:06d}_class{label}.png"] = images[n]
            if req.progressive:
                strip = _progressive_strip(tok, steps[n // req.batch_size], n % req.batch_size, DTYPES[req.pixel_dtype])
                files[f"{n:06d}_class{label}_progressive.png"] = strip
    return files


def _classes(classes: Any, num_classes: int) -> list[int]:
    """Class ids from the ``--classes`` the request names, or a ValueError naming the option."""
    try:
        return resolve_classes(classes, num_classes)
    except ValueError as e:
        raise ValueError(f"--classes: {e}") from None


def write_samples(req: SampleRequest) -> dict[str, Any]:
    """Sample ``req.per_class`` images of each class and write them, ``grid.png`` and ``manifest.json`` (every setting,
    the seed, the models' sources and SHA-256) to ``req.out``; returns the manifest."""
    if req.per_class < 1:
        raise ValueError("--per-class must be >= 1")
    gen, tok = load_pair(req.tokenizer, req.generator, device=req.device)
    if req.num_tokens is not None and req.num_tokens not in tok.prefix_lengths:
        raise ValueError(
            f"--num-tokens {req.num_tokens} is not a prefix length of the tokenizer; choose one of "
            f"{list(tok.prefix_lengths)}"
        )
    classes = _classes(req.classes, gen.config.num_classes)
    try:
        sampling = SamplingConfig.resolve(req.recipe, gen.generation_config, **req.changes)
    except ValueError as e:
        raise ValueError(f"sampling: {e}") from None
    labels = [c for c in classes for _ in range(req.per_class)]
    t0 = time.perf_counter()
    files = _sample_all(ResTokPipeline(tok, gen), labels, sampling, req)
    seconds = time.perf_counter() - t0
    calls = sum(1 for _, e in gen.step_positions if e <= (req.num_tokens or gen.num_tokens))
    files["grid.png"] = sample_grid(
        torch.stack([files[f"{n:06d}_class{c}.png"] for n, c in enumerate(labels)]), req.per_class
    )
    for name, image in files.items():
        save_image(image, Path(req.out) / name)
    settings = {
        **sampling.to_dict(),
        "seed": req.seed,
        "batch_size": req.batch_size,
        "dtype": req.dtype,
        "pixel_dtype": req.pixel_dtype,
        "device": str(tok.device),
        "per_class": req.per_class,
        "classes": classes,
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
        "images": [{"file": f"{n:06d}_class{c}.png", "class": c} for n, c in enumerate(labels)],
        "seconds": round(seconds, 3),
    }
    write_json(Path(req.out) / "manifest.json", manifest)
    return manifest


@dataclass(frozen=True)
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
    recipe: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    dtype: str = "fp32"
    pixel_dtype: str = "fp32"


def write_variations(req: VariationRequest) -> dict[str, Any]:
    """Coarse-kept variations of one image: its first ``keep`` tokens kept, the finer levels sampled; writes each, the
    strip (original, its coarse reconstruction, the variations) and a JSON record; returns the record."""
    if req.num < 1:
        raise ValueError("--num must be >= 1")
    gen, tok = load_pair(req.tokenizer, req.generator, device=req.device)
    steps = [e for _, e in gen.step_positions]
    if req.keep not in steps:
        raise ValueError(f"--keep {req.keep} is not a step boundary of this generator; choose one of {steps}")
    original = load_image(req.image, tok.config.image_size)  # (3, S, S)
    (label,) = _classes([req.classes], gen.config.num_classes)
    sampling = SamplingConfig.resolve(req.recipe, gen.generation_config, **req.changes)
    ids = tok.encode(original[None].to(tok.device))[:, : req.keep]  # (1, keep)
    with autocast_to(tok.device, DTYPES[req.dtype]):
        out = gen.generate(
            [label] * req.num, sampling, generator=torch.Generator(gen.device).manual_seed(req.seed), prefix=ids
        )
        images = tok.decode(out, DTYPES[req.pixel_dtype]).cpu()  # (num, 3, S, S)
        coarse = tok.decode(ids, DTYPES[req.pixel_dtype]).cpu()[0] if req.keep in tok.prefix_lengths else None
    stem = f"{Path(req.image).stem}_keep{req.keep}"
    strip = [original] + ([coarse] if coarse is not None else []) + list(images)
    files = {
        **{f"{stem}_{i:02d}.png": im for i, im in enumerate(images)},
        f"{stem}_strip.png": make_grid(torch.stack(strip), nrow=len(strip)),
    }
    for name, image in files.items():
        save_image(image, Path(req.out) / name)
    record = {
        "image": str(req.image),
        "keep": req.keep,
        "class": label,
        "seed": req.seed,
        "sampling": sampling.to_dict(),
        "kept_ids": ids[0].tolist(),
        "generator": gen.identity(),
        "tokenizer": tok.identity(),
        "coarse": coarse is not None,
    }
    write_json(Path(req.out) / f"{stem}.json", {k: v for k, v in record.items() if k != "coarse"})
    return record
