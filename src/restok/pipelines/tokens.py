"""Images to tokens and back, with any tokenizer: the one implementation behind ``restok reconstruct``, ``restok
tokenize`` and ``restok detokenize`` and behind :class:`~restok.ResTokPipeline`'s ``reconstruct``, ``tokenize`` and
``detokenize``.

The core works on tensors (:func:`reconstructions`, :func:`encode_images`, :func:`decode_rows`: batched, under the
precisions asked for); the requests (:class:`ReconstructRequest`, :class:`TokenizeRequest`,
:class:`DetokenizeRequest`) read image files through the evaluation transform -- naming and skipping the unreadable
ones -- and write PNG and token files.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.images import ImageLoadError, load_image, make_grid, save_image, unique_stems
from ..data.token_files import TokenFile, read_token_file, write_token_file
from ..eval.budgets import encode_adaptive
from ..models.auto import load_tokenizer
from ..runtime.precision import DTYPES, autocast_to
from ..runtime.processes import resolve_device
from ..runtime.progress import progress
from ..runtime.requests import RequestError
from ..runtime.requests import field as field_name

if TYPE_CHECKING:
    from ..models.tokenizer import Tokenizer

__all__ = [
    "batches",
    "read_images",
    "reconstructions",
    "encode_images",
    "decode_rows",
    "ReconstructRequest",
    "TokenizeRequest",
    "DetokenizeRequest",
    "Written",
    "reconstruct_files",
    "tokenize_files",
    "detokenize_file",
]


def batches(items: Sequence[Any], size: int | None) -> list[Sequence[Any]]:
    """Consecutive chunks of ``items`` (one chunk of everything when ``size`` is None)."""
    size = size or max(1, len(items))
    return [items[i : i + size] for i in range(0, len(items), size)]


def read_images(paths: Sequence[str], size: int, show: bool = True) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
    """Every image through the evaluation transform, in order; the unreadable ones named on stderr, returned apart."""
    ok, failed = [], []
    for p in progress(paths, "reading images", enabled=show):
        try:
            ok.append((p, load_image(p, size)))
        except ImageLoadError as e:
            print(f"warning: skipped {e}", file=sys.stderr)
            failed.append(p)
    return ok, failed


# ------------------------------------------------------------------------------------------- the core, on tensors
@torch.no_grad()
def reconstructions(
    tokenizer: Tokenizer,
    images: torch.Tensor,
    lengths: Sequence[int],
    dtype: str = "fp32",
    pixel_dtype: str | None = None,
) -> dict[int, torch.Tensor]:
    """Images (B, 3, S, S) in [0, 1] encoded once and decoded from each prefix length: {k: (B, 3, S, S)} (``dtype``:
    autocast; ``pixel_dtype``: the pixel decoder's, None for the tokenizer's own)."""
    with autocast_to(tokenizer.device, DTYPES[dtype]):
        ids = tokenizer.encode(images.to(tokenizer.device))  # (B, L)
        return {k: tokenizer.decode(ids[:, :k], _pixels(pixel_dtype)) for k in lengths}


def _pixels(pixel_dtype: str | None) -> torch.dtype | None:
    """The pixel decoder's precision by name (None: the tokenizer's own)."""
    return None if pixel_dtype is None else DTYPES[pixel_dtype]


@torch.no_grad()
def encode_images(
    tokenizer: Tokenizer,
    images: Sequence[torch.Tensor],
    batch_size: int | None = None,
    dtype: str = "fp32",
    target: dict[str, float] | None = None,
    max_tokens: int | None = None,
    show: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Ids (N, L), the tokens each image keeps (N,) and, with an adaptive ``target`` (``{"psnr": 30}``), the quality
    each image reached (N,): every token, or per image the shortest prefix meeting the target."""
    ids, lengths, quality = [], [], []
    for batch in progress(batches(images, batch_size), "tokenizing", enabled=show):
        x = torch.stack(list(batch)).to(tokenizer.device)  # (b, 3, S, S)
        with autocast_to(tokenizer.device, DTYPES[dtype]):
            if target:
                res = encode_adaptive(tokenizer, x, **target, max_tokens=max_tokens)
                ids.append(res.ids)
                lengths.append(res.lengths)
                quality.append(res.quality)
            else:
                ids.append(tokenizer.encode(x).cpu())
                lengths.append(torch.full((len(batch),), tokenizer.num_tokens))
    return torch.cat(ids), torch.cat(lengths), torch.cat(quality) if quality else None


@torch.no_grad()
def decode_rows(
    tokenizer: Tokenizer,
    ids: torch.Tensor,
    jobs: Sequence[tuple[int, int]],
    batch_size: int | None = None,
    dtype: str = "fp32",
    pixel_dtype: str | None = None,
    show: bool = False,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(k, row, image)`` for every ``(k, row)`` of ``jobs``: row ``row`` of ``ids`` decoded from its first k ids, in
    batches of one length."""
    for k in sorted({k for k, _ in jobs}):
        rows = [i for kk, i in jobs if kk == k]
        for idx in progress(batches(rows, batch_size), f"decoding {k} tokens", enabled=show):
            with autocast_to(tokenizer.device, DTYPES[dtype]):
                images = tokenizer.decode(ids[list(idx), :k].to(tokenizer.device), _pixels(pixel_dtype))
            yield from ((k, i, images[j]) for j, i in enumerate(idx))


def rows_to_decode(tf: TokenFile, lengths: list[int] | None) -> list[tuple[int, int]]:
    """(k, row) pairs of a token file: each image from its own length (``lengths`` None), or each of ``lengths`` it
    keeps."""
    if lengths is None:
        return sorted((int(tf.lengths[i]), i) for i in range(len(tf.files)))
    return sorted((k, i) for i in range(len(tf.files)) for k in lengths if k <= tf.lengths[i])


# ------------------------------------------------------------------------------------------- the requests
@dataclass(frozen=True, kw_only=True)
class _Running:
    """Where and how a tokenizer runs (what the three requests share)."""

    device: str = "auto"
    dtype: str = "fp32"
    pixel_dtype: str = "fp32"
    batch_size: int = 16
    progress: bool = True


@dataclass(frozen=True, kw_only=True)
class ReconstructRequest(_Running):
    """``restok reconstruct``: image files reconstructed from ``tokens`` (a length, a list, ``"all"``; None: every
    token), each written beside a side-by-side comparison (or the coarse-to-fine strip of several lengths)."""

    images: tuple[str, ...]
    tokenizer: str
    out: Path
    tokens: int | str | tuple[int, ...] | None = None


@dataclass(frozen=True)
class Written:
    """What a request wrote: how many images or rows, where, the lengths, and the inputs that could not be read."""

    count: int
    out: Path
    lengths: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    note: str = ""


def reconstruct_files(req: ReconstructRequest) -> Written:
    """Reconstruct every readable image of the request; write ``STEM_kK.png`` per length and ``STEM_compare.png``
    (one length) or ``STEM_strip.png`` (several)."""
    tok = load_tokenizer(req.tokenizer, device=resolve_device(req.device))
    ks = tok.select_lengths(req.tokens)
    images, failed = read_images(req.images, tok.config.image_size, req.progress)
    # one name per input, in order: a path given twice gets two names (and two outputs), as the count says
    named = list(zip(unique_stems([p for p, _ in images]), (t for _, t in images)))
    out = Path(req.out)
    for batch in progress(batches(named, req.batch_size), "reconstructing", enabled=req.progress):
        recons = reconstructions(tok, torch.stack([t for _, t in batch]), ks, req.dtype, req.pixel_dtype)
        for i, (stem, orig) in enumerate(batch):
            for k in ks:
                save_image(recons[k][i], out / f"{stem}_k{k}.png")
            strip = [orig] + [recons[k][i].cpu() for k in ks]
            name = f"{stem}_strip.png" if len(ks) > 1 else f"{stem}_compare.png"
            save_image(make_grid(strip, nrow=len(strip)), out / name)
    return Written(len(images), out, ks, failed)


@dataclass(frozen=True, kw_only=True)
class TokenizeRequest(_Running):
    """``restok tokenize``: image files to a token file -- every token, or per image the shortest prefix reaching a
    PSNR or SSIM target (capped at ``max_tokens``)."""

    images: tuple[str, ...]
    tokenizer: str
    out: Path
    target_psnr: float | None = None
    target_ssim: float | None = None
    max_tokens: int | None = None


def _target(req: TokenizeRequest, tok: Tokenizer) -> dict[str, float]:
    """The adaptive target asked for (empty: every token), refusing two targets or a cap without one."""
    target = {k: v for k, v in {"psnr": req.target_psnr, "ssim": req.target_ssim}.items() if v is not None}
    if len(target) > 1:
        raise RequestError(f"give one of {field_name('target_psnr')} and {field_name('target_ssim')}")
    if req.max_tokens is not None and not target:
        raise RequestError(
            f"{field_name('max_tokens')} caps an adaptive budget: give {field_name('target_psnr')} or "
            f"{field_name('target_ssim')} too"
        )
    if req.max_tokens is not None and req.max_tokens not in tok.prefix_lengths:
        raise RequestError(
            f"{field_name('max_tokens')} {req.max_tokens} is not a prefix length of the tokenizer; choose one of "
            f"{list(tok.prefix_lengths)}"
        )
    return target


def tokenize_files(req: TokenizeRequest) -> Written:
    """Encode every readable image of the request and write their ids, lengths and file names (``restok tokenize``'s
    format); the note says how many tokens each kept."""
    tok = load_tokenizer(req.tokenizer, device=resolve_device(req.device))
    target = _target(req, tok)
    images, failed = read_images(req.images, tok.config.image_size, req.progress)
    if not images:
        raise RequestError("no readable images")
    tensors = [t for _, t in images]
    ids, lengths, quality = encode_images(
        tok, tensors, req.batch_size, req.dtype, target, req.max_tokens, show=req.progress
    )
    label = ", ".join(f"{m}>={v}" for m, v in target.items()) or None
    files = [p for p, _ in images]
    q = None if quality is None else quality.numpy()
    write_token_file(
        req.out, TokenFile(ids.numpy(), lengths.numpy(), files, req.tokenizer, tok.config.image_size, label, q)
    )
    if not target:
        per = f"{tok.num_tokens} tokens each"
    else:
        per = f"{float(lengths.float().mean()):.1f} tokens per image on average ({label.replace('>=', ' >= ')})"
    return Written(len(images), Path(req.out), sorted(set(lengths.tolist())), failed, per)


@dataclass(frozen=True, kw_only=True)
class DetokenizeRequest(_Running):
    """``restok detokenize``: a token file decoded to PNGs with the tokenizer it records (or ``tokenizer``), each image
    from its own length, or from the lengths ``tokens`` names."""

    codes: Path
    out: Path
    tokenizer: str | None = None
    tokens: int | str | tuple[int, ...] | None = None


def _wanted(tf: TokenFile, tokens: Any, tok: Tokenizer) -> list[tuple[int, int]]:
    """(k, row) pairs to decode, refusing a length longer than some image keeps (unless ``"all"``)."""
    if tokens is None:
        return rows_to_decode(tf, None)
    ks = tok.select_lengths(tokens)
    if tokens != "all":
        short = [tf.files[i] for i in range(len(tf.files)) if tf.lengths[i] < max(ks)]
        if short:
            raise RequestError(
                f"{len(short)} image(s) keep fewer than {max(ks)} tokens (e.g. {short[0]}); decode them with a shorter "
                f"{field_name('tokens')}"
            )
    return rows_to_decode(tf, ks)


def detokenize_file(req: DetokenizeRequest) -> Written:
    """Decode the request's token file; write ``STEM.png`` per image, or ``STEM_kK.png`` when several lengths are
    asked for."""
    tf = read_token_file(req.codes)
    tok = load_tokenizer(req.tokenizer or tf.tokenizer, device=resolve_device(req.device))
    tf.check_lengths(tok.prefix_lengths, str(req.codes))
    jobs = _wanted(tf, req.tokens, tok)
    several = req.tokens is not None and (
        req.tokens == "all" or "," in str(req.tokens) or not isinstance(req.tokens, (int, str))
    )
    out, stems = Path(req.out), unique_stems(tf.files)
    rows = decode_rows(tok, torch.from_numpy(tf.ids), jobs, req.batch_size, req.dtype, req.pixel_dtype, req.progress)
    for k, i, image in rows:
        save_image(image, out / (f"{stems[i]}_k{k}.png" if several else f"{stems[i]}.png"))
    return Written(len(jobs), out, sorted({k for k, _ in jobs}))
