"""``restok reconstruct``, ``restok tokenize``, ``restok detokenize``: images to tokens and back, with any tokenizer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..core.hierarchy import select_prefixes
from ..data.images import ImageLoadError, load_image, make_grid, save_image
from ..data.token_files import TokenFile, read_token_file, write_token_file
from ..eval.budgets import encode_adaptive
from ..models.auto import load_tokenizer
from ..runtime.precision import DTYPES, autocast_to
from ..runtime.processes import resolve_device
from ..runtime.progress import progress
from .base import EXIT_INPUTS_FAILED, CLIError, Command, batches, unique_stems
from .options import (
    batch_option,
    device_option,
    group,
    model_options,
    number,
    output_option,
    parse_tokens,
    precision_options,
    target_type,
    tokens_option,
)

__all__ = ["COMMANDS", "load_images"]


def load_images(paths: Sequence[str], size: int) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
    """Read every image through the evaluation transform, naming and skipping the ones that fail."""
    ok, failed = [], []
    for p in progress(paths, "reading images"):
        try:
            ok.append((p, load_image(p, size)))
        except ImageLoadError as e:
            print(f"warning: skipped {e}", file=sys.stderr)
            failed.append(p)
    return ok, failed


def _running(p: argparse.ArgumentParser) -> None:
    """Where and how the tokenizer runs."""
    device_option(p)
    precision_options(p)
    batch_option(p, 16)


def _lengths(tokens: str | None, tok: Any) -> list[int]:
    """The prefix lengths ``--tokens`` names (None: all tokens), checked against what the tokenizer decodes."""
    try:
        return select_prefixes(parse_tokens(tokens), tuple(tok.prefix_lengths), tok.decodable, tok.describe_lengths())
    except ValueError as e:
        raise CLIError(f"--tokens: {e}") from None


def _failed_note(failed: list[str]) -> str:
    return f"; {len(failed)} input(s) failed" if failed else ""


# ------------------------------------------------------------------------------------------- reconstruct
def _reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, ...)")
    model_options(p, tokenizer="required")
    tokens_option(p, "tokens to keep: a prefix length (4, 8, ..., 128), a comma list, or 'all' (default: all tokens)")
    output_option(p, "output directory")
    _running(p)


def run_reconstruct(args: argparse.Namespace) -> int:
    """Reconstruct images from k tokens; write each reconstruction and a side-by-side comparison."""
    device = resolve_device(args.device)
    tok = load_tokenizer(args.tokenizer, device=device)
    ks = _lengths(args.tokens, tok)
    out = Path(args.out)
    images, failed = load_images(args.images, tok.config.image_size)
    # one name per input, in order: a path given twice gets two names (and two outputs), as the count says
    named = list(zip(unique_stems([p for p, _ in images]), (t for _, t in images)))
    for batch in progress(batches(named, args.batch_size), "reconstructing"):
        x = torch.stack([t for _, t in batch]).to(device)  # (b, 3, S, S)
        with autocast_to(device, DTYPES[args.dtype]):
            ids = tok.encode(x)
            recons = {k: tok.decode(ids[:, :k], DTYPES[args.pixel_dtype]) for k in ks}
        for i, (stem, orig) in enumerate(batch):
            for k in ks:
                save_image(recons[k][i], out / f"{stem}_k{k}.png")
            strip = [orig] + [recons[k][i].cpu() for k in ks]
            save_image(
                make_grid(strip, nrow=len(strip)), out / (f"{stem}_strip.png" if len(ks) > 1 else f"{stem}_compare.png")
            )
    print(f"wrote {len(images)} reconstruction(s) with {ks} tokens to {out}{_failed_note(failed)}")
    return EXIT_INPUTS_FAILED if failed else 0


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


def _budget(args: argparse.Namespace) -> dict[str, float]:
    """The adaptive target asked for (empty: every token), or a CLIError."""
    target = {k: v for k, v in {"psnr": args.target_psnr, "ssim": args.target_ssim}.items() if v is not None}
    if len(target) > 1:
        raise CLIError("give one of --target-psnr and --target-ssim")
    if args.max_tokens is not None and not target:
        raise CLIError("--max-tokens caps an adaptive budget: give --target-psnr or --target-ssim too")
    return target


def _encode_all(
    tok: Any,
    images: list[tuple[str, torch.Tensor]],
    args: argparse.Namespace,
    device: torch.device,
    target: dict[str, float],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Ids (N, L), lengths (N,) and, with a target, the quality each image reached."""
    ids, lengths, quality = [], [], []
    for batch in progress(batches(images, args.batch_size), "tokenizing"):
        x = torch.stack([t for _, t in batch]).to(device)  # (b, 3, S, S)
        with autocast_to(device, DTYPES[args.dtype]):
            if target:
                res = encode_adaptive(tok, x, **target, max_tokens=args.max_tokens)
                ids.append(res.ids)
                lengths.append(res.lengths)
                quality.append(res.quality)
            else:
                ids.append(tok.encode(x).cpu())
                lengths.append(torch.full((len(batch),), tok.num_tokens))
    return torch.cat(ids), torch.cat(lengths), torch.cat(quality) if quality else None


def run_tokenize(args: argparse.Namespace) -> int:
    """Encode images to token ids and save them with the file names in an .npz."""
    device = resolve_device(args.device)
    tok = load_tokenizer(args.tokenizer, device=device)
    target = _budget(args)
    if args.max_tokens is not None and args.max_tokens not in tok.prefix_lengths:
        raise CLIError(
            f"--max-tokens {args.max_tokens} is not a prefix length of the tokenizer; choose one of "
            f"{list(tok.prefix_lengths)}"
        )
    images, failed = load_images(args.images, tok.config.image_size)
    if not images:
        raise CLIError("no readable images")
    ids, lengths, quality = _encode_all(tok, images, args, device, target)
    label = ", ".join(f"{m}>={v}" for m, v in target.items()) or None
    tf = TokenFile(
        ids.numpy(),
        lengths.numpy(),
        [p for p, _ in images],
        args.tokenizer,
        tok.config.image_size,
        label,
        None if quality is None else quality.numpy(),
    )
    write_token_file(args.out, tf)
    per = (
        f"{tok.num_tokens} tokens each"
        if not target
        else f"{float(lengths.float().mean()):.1f} tokens per image on average ({label.replace('>=', ' >= ')})"
    )
    print(f"wrote ids of {len(images)} image(s), {per}, to {args.out}{_failed_note(failed)}")
    return EXIT_INPUTS_FAILED if failed else 0


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


def _wanted(tf: TokenFile, tokens: str | None, tok: Any) -> list[tuple[int, int]]:
    """(k, row) pairs to decode: each image from its own length, or the lengths ``--tokens`` names that it keeps."""
    if tokens is None:
        return sorted((int(tf.lengths[i]), i) for i in range(len(tf.files)))
    ks = _lengths(tokens, tok)
    if tokens != "all":
        short = [tf.files[i] for i in range(len(tf.files)) if tf.lengths[i] < max(ks)]
        if short:
            raise CLIError(
                f"{len(short)} image(s) keep fewer than {max(ks)} tokens (e.g. {short[0]}); decode them with a "
                "shorter --tokens"
            )
    return sorted((k, i) for i in range(len(tf.files)) for k in ks if k <= tf.lengths[i])


def run_detokenize(args: argparse.Namespace) -> int:
    """Decode the ids of an .npz written by ``tokenize`` back to PNG images."""
    device = resolve_device(args.device)
    tf = read_token_file(args.codes)
    tok = load_tokenizer(args.tokenizer or tf.tokenizer, device=device)
    tf.check_lengths(tok.prefix_lengths, str(args.codes))
    jobs = _wanted(tf, args.tokens, tok)
    several = args.tokens is not None and (args.tokens == "all" or "," in args.tokens)
    out, stems, ids_all = Path(args.out), unique_stems(tf.files), torch.from_numpy(tf.ids)
    for k in sorted({k for k, _ in jobs}):
        rows = [i for kk, i in jobs if kk == k]
        for idx in progress(batches(rows, args.batch_size), f"decoding {k} tokens"):
            with autocast_to(device, DTYPES[args.dtype]):
                imgs = tok.decode(ids_all[list(idx), :k].to(device), DTYPES[args.pixel_dtype])
            for j, i in enumerate(idx):
                save_image(imgs[j], out / (f"{stems[i]}_k{k}.png" if several else f"{stems[i]}.png"))
    print(f"wrote {len(jobs)} image(s) to {out}")
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
