"""``restok reconstruct``, ``restok tokenize``, ``restok detokenize``: images to tokens and back, with any tokenizer
(the work is :mod:`restok.pipelines.tokens`)."""

from __future__ import annotations

import argparse

from ..pipelines.tokens import (
    DetokenizeRequest,
    ReconstructRequest,
    TokenizeRequest,
    Written,
    detokenize_file,
    read_images,
    reconstruct_files,
    tokenize_files,
)
from .base import EXIT_INPUTS_FAILED, Command, request
from .options import (
    batch_option,
    device_option,
    group,
    model_options,
    number,
    output_option,
    precision_options,
    progress_option,
    target_type,
    tokens_option,
)

__all__ = ["COMMANDS", "load_images"]

# The name this helper had when it lived here.
load_images = read_images


def _running(p: argparse.ArgumentParser) -> None:
    """Where and how the tokenizer runs."""
    device_option(p)
    precision_options(p)
    batch_option(p, 16)
    progress_option(p)


def _report(written: Written, what: str) -> int:
    """Print the one summary line; exit status 1 when some inputs could not be read."""
    failed = f"; {len(written.failed)} input(s) failed" if written.failed else ""
    print(what + failed)
    return EXIT_INPUTS_FAILED if written.failed else 0


# ------------------------------------------------------------------------------------------- reconstruct
def _reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, ...)")
    model_options(p, tokenizer="required")
    tokens_option(p, "tokens to keep: a prefix length (4, 8, ..., 128), a comma list, or 'all' (default: all tokens)")
    output_option(p, "output directory")
    _running(p)


def run_reconstruct(args: argparse.Namespace) -> int:
    """Reconstruct images from k tokens; write each reconstruction and a side-by-side comparison."""
    w = reconstruct_files(request(ReconstructRequest, args))
    return _report(w, f"wrote {w.count} reconstruction(s) with {w.lengths} tokens to {w.out}")


# ------------------------------------------------------------------------------------------- tokenize
def _tokenize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files")
    model_options(p, tokenizer="required")
    g = group(p, "adaptive budget")
    g.add_argument(
        "--target-psnr",
        type=target_type("psnr"),
        default=None,
        help="keep per image the shortest prefix reaching this PSNR (dB)",
    )
    g.add_argument("--target-ssim", type=target_type("ssim"), default=None, help="... or this SSIM")
    g.add_argument("--max-tokens", type=number(int, ge=1, le=8192), default=None, help="cap of the adaptive budget")
    output_option(p, "output .npz file (ids (N, L) with -1 past each image's length, lengths, files)")
    _running(p)


def run_tokenize(args: argparse.Namespace) -> int:
    """Encode images to token ids and save them with the file names in an .npz."""
    w = tokenize_files(request(TokenizeRequest, args))
    return _report(w, f"wrote ids of {w.count} image(s), {w.note}, to {args.out}")


# ------------------------------------------------------------------------------------------- detokenize
def _detokenize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("codes", help=".npz written by 'restok tokenize'")
    model_options(p, tokenizer="optional")  # default: the tokenizer the file records
    tokens_option(
        p,
        "decode a prefix (a length, a comma list, or 'all' for every length an image keeps); default: each "
        "image from its own length",
    )
    output_option(p, "output directory")
    _running(p)


def run_detokenize(args: argparse.Namespace) -> int:
    """Decode the ids of an .npz written by ``tokenize`` back to PNG images."""
    w = detokenize_file(request(DetokenizeRequest, args))
    print(f"wrote {w.count} image(s) to {w.out}")
    return 0


COMMANDS = (
    Command(
        "reconstruct",
        "reconstruct images from k tokens (or the coarse-to-fine strip)",
        _reconstruct_arguments,
        run_reconstruct,
    ),
    Command(
        "tokenize",
        "encode images to token ids (.npz), all tokens or an adaptive budget per image",
        _tokenize_arguments,
        run_tokenize,
    ),
    Command("detokenize", "decode token ids (.npz from 'tokenize') to images", _detokenize_arguments, run_detokenize),
)
