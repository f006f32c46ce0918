"""The token-ids file of ``restok tokenize`` (``.npz``, no pickles): written, read and validated here for the command
line, the web demo and the pipeline alike.

Arrays: ``ids`` int32 (N, L) with -1 past each image's length, ``lengths`` (N,) the tokens each image keeps,
``files`` (N,) the images' names, ``tokenizer`` (where it came from) and ``image_size``; an adaptive budget adds
``target`` (e.g. ``"psnr>=30.0"``) and ``quality`` (N,) the metric each image reached. Files written before
``lengths`` existed hold all L tokens of every image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime.files import save_npz
from ..runtime.inputs import read_npz
from .codes import fill_past_lengths

__all__ = ["TokenFile", "TokenFileError", "write_token_file", "read_token_file"]


class TokenFileError(ValueError):
    """A file that is not a readable, consistent token-ids file."""


@dataclass
class TokenFile:
    """The contents of a token-ids file."""

    ids: np.ndarray  # (N, L) integer ids, -1 past each row's length
    lengths: np.ndarray  # (N,) int64 tokens kept per image
    files: list[str]  # (N,) names of the images
    tokenizer: str  # the tokenizer's source (embedded name, folder, file or Hub id)
    image_size: int
    target: str | None = None  # "psnr>=30.0" for an adaptive budget
    quality: np.ndarray | None = None  # (N,) the metric each image reached

    def check_lengths(self, prefix_lengths: Sequence[int], where: str) -> None:
        """Raise a TokenFileError unless every row's length is one of the tokenizer's prefix lengths."""
        bad = sorted(set(self.lengths.tolist()) - set(prefix_lengths))
        if bad:
            raise TokenFileError(
                f"{where}: lengths {bad[:5]} are not prefix lengths of the tokenizer {list(prefix_lengths)}"
            )


def write_token_file(path: str | os.PathLike, tf: TokenFile) -> Path:
    """Write ``tf`` atomically (``ids`` as int32, -1 past each length)."""
    ids = np.asarray(tf.ids).astype(np.int32)
    lengths = np.asarray(tf.lengths).astype(np.int32)
    fill_past_lengths(ids, lengths, -1)
    arrays = dict(
        ids=ids,
        lengths=lengths,
        files=np.array(list(tf.files)),
        tokenizer=np.array(tf.tokenizer),
        image_size=np.array(tf.image_size),
    )
    if tf.target is not None:
        arrays.update(target=np.array(tf.target), quality=np.asarray(tf.quality))
    return save_npz(path, **arrays)


def read_token_file(path: str | os.PathLike) -> TokenFile:
    """Read and check a token-ids file: integer ids (N, L), one name and one length (<= L) per row."""
    try:
        data = read_npz(path, "codes file")
        raw, files = data["ids"], [str(f) for f in data["files"]]
        tokenizer, size = str(data["tokenizer"]), int(data["image_size"]) if "image_size" in data else 0
    except Exception as e:  # noqa: BLE001 - OSError, BadZipFile, EOFError, KeyError, ValueError: all mean "not one"
        raise TokenFileError(f"{path}: not a readable restok codes file ({type(e).__name__}: {e})") from None
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer):
        raise TokenFileError(f"{path}: 'ids' must be integers of shape (N, L), got {raw.dtype} {list(raw.shape)}")
    if any("\x00" in f for f in files):
        row = next(i for i, f in enumerate(files) if "\x00" in f)
        raise TokenFileError(
            f"{path}: the file name of row {row} holds a NUL character ({files[row]!r}); no file can have it"
        )
    if len(files) != raw.shape[0]:
        raise TokenFileError(f"{path}: {raw.shape[0]} rows of ids but {len(files)} file names")
    lengths = data["lengths"] if "lengths" in data else np.full(raw.shape[0], raw.shape[1])
    if lengths.shape != (raw.shape[0],) or not np.issubdtype(lengths.dtype, np.integer):
        raise TokenFileError(
            f"{path}: 'lengths' must hold one integer length per row, got {lengths.dtype} {list(lengths.shape)}"
        )
    if lengths.size and (int(lengths.min()) < 1 or int(lengths.max()) > raw.shape[1]):
        raise TokenFileError(
            f"{path}: lengths must be in [1, {raw.shape[1]}], got [{int(lengths.min())}, {int(lengths.max())}]"
        )
    target = str(data["target"]) if "target" in data else None
    quality = data["quality"] if "quality" in data else None
    return TokenFile(raw.astype(np.int64), lengths.astype(np.int64), files, tokenizer, size, target, quality)
