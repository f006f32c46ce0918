"""``restok generate`` (class-conditional samples, a grid and a manifest of every setting) and ``restok vary``
(coarse-kept variations of one image), with any registered generator and the tokenizer it was trained on."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..data.classes import resolve_classes
from ..data.images import ImageLoadError, load_image, make_grid, sample_grid, save_image
from ..models.auto import load_pair
from ..runtime.files import write_json
from ..runtime.precision import DTYPES, autocast_to
from ..runtime.processes import resolve_device
from ..runtime.progress import progress
from ..runtime.version import __version__
from ..sampling import CompiledSampler
from .base import CLIError, Command, batches
from .options import (batch_option, compile_option, device_option, group, model_options, output_option, precision_options,
                      sampling_from_args, sampling_options, seed_option)

__all__ = ["COMMANDS"]


def _pair_and_recipe(p: argparse.ArgumentParser) -> None:
    """The models, the sampling recipe, the seed and where they run."""
    model_options(p, tokenizer="required", generator="required")
    sampling_options(p)
    seed_option(p)
    device_option(p)
    precision_options(p)
    batch_option(p, 16)


# ------------------------------------------------------------------------------------------- generate
def _generate_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "what to generate")
    g.add_argument("--classes", nargs="+", required=True,
                   help='class ids or names, e.g. 207 360 or "golden retriever" otter (ImageNet names for 1,000-class models)')
    g.add_argument("--per-class", type=int, default=1, help="images per class (default: 1)")
    g.add_argument("--num-tokens", type=int, default=None, help="stop after the call that completes this many tokens (fewer calls)")
    g.add_argument("--progressive", action="store_true", help="also write what each HAR step decodes to, coarse to fine")
    _pair_and_recipe(p)
    compile_option(p)
    output_option(p, "output directory")


def _write_progressive(tok: Any, ids: torch.Tensor, steps: list[torch.Tensor], j: int, path: Path, args: argparse.Namespace,
                       device: torch.device) -> None:
    """What sample ``j`` decodes to after each step that completes a prefix, coarse to fine, as one strip."""
    ends = [int(s.shape[1]) for s in steps]
    with autocast_to(device, DTYPES[args.dtype]):
        frames = [tok.decode(ids[j : j + 1, :k], DTYPES[args.pixel_dtype])[0].cpu() for k in tok.prefix_lengths if k in ends]
    save_image(make_grid(frames, nrow=len(frames)), path)


def _sample(gen: Any, tok: Any, labels: list[int], sampling: Any, args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Every image, batch after batch from one seeded generator, written as it comes; returns them and their records."""
    rng = torch.Generator(device=device).manual_seed(args.seed)
    samplers: dict[int, CompiledSampler] = {}
    out, images_all, records = Path(args.out), [], []
    for b, chunk in enumerate(progress(batches(labels, args.batch_size), "generating")):
        steps: list[torch.Tensor] = []
        callback = (lambda s, seq, end: steps.append(seq.clone())) if args.progressive else None
        rows = len(chunk) * (2 if sampling.cfg_scale > 1.0 else 1)
        if args.compile and rows not in samplers:
            samplers[rows] = CompiledSampler(gen, rows)
        with autocast_to(device, DTYPES[args.dtype]):
            ids = gen.generate(chunk, sampling, generator=rng, callback=callback, num_tokens=args.num_tokens, sampler=samplers.get(rows))
            images = tok.decode(ids, DTYPES[args.pixel_dtype], compile=args.compile)
        for j, label in enumerate(chunk):
            n = b * args.batch_size + j
            save_image(images[j], out / f"{n:06d}_class{label}.png")
            records.append({"file": f"{n:06d}_class{label}.png", "class": label})
            if args.progressive:
                _write_progressive(tok, ids, steps, j, out / f"{n:06d}_class{label}_progressive.png", args, device)
        images_all.append(images.cpu())
    return torch.cat(images_all), records


def run_generate(args: argparse.Namespace) -> int:
    """Sample class-conditional images; write PNGs, a grid and a JSON manifest of every setting."""
    if args.per_class < 1:
        raise CLIError("--per-class must be >= 1")
    device = resolve_device(args.device)
    gen, tok = load_pair(args.tokenizer, args.generator, device=device)
    if args.num_tokens is not None and args.num_tokens not in tok.prefix_lengths:
        raise CLIError(f"--num-tokens {args.num_tokens} is not a prefix length of the tokenizer; choose one of {list(tok.prefix_lengths)}")
    classes = resolve_classes(args.classes, gen.config.num_classes)
    labels = [c for c in classes for _ in range(args.per_class)]
    sampling = sampling_from_args(args, gen.generation_config)
    t0 = time.perf_counter()
    images, records = _sample(gen, tok, labels, sampling, args, device)
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    calls = sum(1 for _, e in gen.step_positions if e <= (args.num_tokens or gen.num_tokens))
    save_image(sample_grid(images, args.per_class), out / "grid.png")
    settings = {**sampling.to_dict(), "seed": args.seed, "batch_size": args.batch_size, "dtype": args.dtype,
                "pixel_dtype": args.pixel_dtype, "device": str(device), "per_class": args.per_class, "classes": classes,
                "num_tokens": args.num_tokens or gen.num_tokens, "num_model_calls": calls, "compile": args.compile}
    write_json(out / "manifest.json", {"restok_version": __version__, "created": datetime.now(timezone.utc).isoformat(),
                                       "settings": settings, "generator": gen.identity(), "tokenizer": tok.identity(),
                                       "images": records, "seconds": round(elapsed, 3)})
    print(f"wrote {len(labels)} image(s), grid.png and manifest.json to {out} ({elapsed:.1f}s, {calls} calls per batch)")
    return 0


# ------------------------------------------------------------------------------------------- vary
def _vary_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file")
    g = group(p, "what to generate")
    g.add_argument("--keep", type=int, required=True, help="tokens kept (a level boundary: 1, 2, 4, 8, ...)")
    g.add_argument("--classes", required=True, help="class id or name of the variations")
    g.add_argument("--num", type=int, default=8, help="variations (default: 8)")
    _pair_and_recipe(p)
    output_option(p, "output directory")


def run_vary(args: argparse.Namespace) -> int:
    """Coarse-kept variations of one image: its first ``--keep`` tokens kept, the finer levels sampled."""
    if args.num < 1:
        raise CLIError("--num must be >= 1")
    device = resolve_device(args.device)
    gen, tok = load_pair(args.tokenizer, args.generator, device=device)
    steps = [e for _, e in gen.step_positions]
    if args.keep not in steps:
        raise CLIError(f"--keep {args.keep} is not a step boundary of this generator; choose one of {steps}")
    try:
        original = load_image(args.image, tok.config.image_size)
    except ImageLoadError as e:
        raise CLIError(str(e)) from None
    (label,) = resolve_classes([args.classes], gen.config.num_classes)
    sampling = sampling_from_args(args, gen.generation_config)
    ids = tok.encode(original[None].to(device))[:, : args.keep]  # (1, keep)
    with autocast_to(device, DTYPES[args.dtype]):
        out = gen.generate([label] * args.num, sampling, generator=torch.Generator(device).manual_seed(args.seed), prefix=ids)
        images = tok.decode(out, DTYPES[args.pixel_dtype]).cpu()
        coarse = tok.decode(ids, DTYPES[args.pixel_dtype]).cpu()[0] if args.keep in tok.prefix_lengths else None
    dest, stem = Path(args.out), Path(args.image).stem
    for i, im in enumerate(images):
        save_image(im, dest / f"{stem}_keep{args.keep}_{i:02d}.png")
    strip = [original] + ([coarse] if coarse is not None else []) + list(images)
    save_image(make_grid(torch.stack(strip), nrow=len(strip)), dest / f"{stem}_keep{args.keep}_strip.png")
    write_json(dest / f"{stem}_keep{args.keep}.json", {"image": str(args.image), "keep": args.keep, "class": label, "seed": args.seed,
               "sampling": sampling.to_dict(), "kept_ids": ids[0].tolist(), "generator": gen.identity(), "tokenizer": tok.identity()})
    print(f"wrote {args.num} variations keeping {args.keep} of {tok.num_tokens} tokens, and the strip "
          f"(original{', coarse' if coarse is not None else ''}, variations) to {dest}")
    return 0


COMMANDS = (
    Command("generate", "class-conditional generation (HAR, 9 calls for 128 tokens)", _generate_arguments, run_generate),
    Command("vary", "coarse-kept variations: keep an image's first k tokens, sample the finer levels", _vary_arguments, run_vary),
)
