"""Image sources: a folder tree, tar shards, or the embedded data, behind one interface (:mod:`.records`).

* a folder tree: one sub-folder per class (sorted names, as torchvision's ImageFolder), or a flat folder of
  unlabelled images;
* webdataset-style tar shards (``KEY.jpg``/``KEY.png`` + ``KEY.cls``), a folder of them, one ``.tar`` or a brace
  pattern (``shards-{0000..0099}.tar``) -- indexed once, so that every sample has a fixed position, which is what
  makes resume and multi-process runs exact;
* a Hugging Face dataset: a ``save_to_disk`` folder, parquet files, ``hf:ID`` (:mod:`.hf`);
* ``embedded:NAME`` (:mod:`.embedded`).

Unreadable files are skipped where they are read (the next sample takes their place), counted and named.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from ..runtime.inputs import read_bytes_input, regular_file
from .embedded import embedded_source
from .hf import hf_source, is_hf_spec
from .images import IMAGE_SUFFIXES
from .records import DataError, ImageRecord, ImageSource
from .shard_index import ShardRecords, load_shard_index

__all__ = ["open_image_source", "MAX_SHARDS", "MAX_SPARSE_CLASSES"]


def _read_file(path: str) -> bytes:
    return read_bytes_input(path, "image")


def _folder_source(root: Path) -> ImageSource:
    """Sub-folders with images = classes (sorted names, as torchvision's ImageFolder); else flat, unlabelled."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    is_img = lambda p: p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES  # noqa: E731
    classes = [d for d in subdirs if any(is_img(p) for p in d.rglob("*"))]
    records: list[ImageRecord] = []
    if classes:
        for label, d in enumerate(classes):
            for p in sorted(d.rglob("*")):
                if is_img(p):
                    records.append(ImageRecord(str(p), label, functools.partial(_read_file, str(p))))
        names = [d.name for d in classes]
    else:
        for p in sorted(root.iterdir()):
            if is_img(p):
                records.append(ImageRecord(str(p), -1, functools.partial(_read_file, str(p))))
        names = []
    if not records:
        raise DataError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return ImageSource(records, names, f"image folder {root} ({len(records)} images, {len(names)} classes)")


MAX_SHARDS = 100_000  # a brace pattern naming more shards than this is refused before it is expanded
# Class ids of tar shards run from 0 to the largest label; a largest label far above the number of classes seen
# (one stray .cls of 1000000) would build a huge generator, so it is refused.
MAX_SPARSE_CLASSES = 1000


def _expand_braces(pattern: str) -> list[str]:
    """``shards-{0000..0003}.tar`` -> the four names (webdataset's brace notation); refuses more than MAX_SHARDS."""
    total = 1
    for a, b in re.findall(r"\{(\d+)\.\.(\d+)\}", pattern):
        if int(b) < int(a):
            raise DataError(f"shard pattern {pattern!r}: range {{{a}..{b}}} is empty")
        total *= int(b) - int(a) + 1
        if total > MAX_SHARDS:
            raise DataError(f"shard pattern {pattern!r} names more than {MAX_SHARDS:,} shards; is it a typo?")
    m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not m:
        return [pattern]
    a, b = m.group(1), m.group(2)
    out = []
    for i in range(int(a), int(b) + 1):
        out += _expand_braces(pattern[: m.start()] + str(i).zfill(len(a)) + pattern[m.end() :])
    return out


def _shard_source(paths: list[str]) -> ImageSource:
    """Index tar shards (:mod:`.shard_index`: image + optional ``.cls`` label per key, cached beside the shards)."""
    for path in paths:
        try:
            regular_file(path, "shard")
        except (OSError, ValueError) as e:
            raise DataError(str(e)) from None
    try:
        index = load_shard_index(paths)
    except OSError as e:
        raise DataError(f"cannot read the shards: {e}") from None
    if not len(index):
        raise DataError(f"no images found in {len(paths)} shard(s) starting {paths[0]}")
    seen = np.unique(index.label[index.label >= 0])
    n_cls = int(seen[-1]) + 1 if len(seen) else 0
    if n_cls > MAX_SPARSE_CLASSES and n_cls > 2 * len(seen):
        raise DataError(
            f"the .cls labels of {len(paths)} shard(s) go up to {n_cls - 1} but only {len(seen)} distinct classes "
            "appear; class ids must run 0..C-1 (a stray label?)"
        )
    names = [str(i) for i in range(n_cls)]
    return ImageSource(ShardRecords(index), names, f"{len(paths)} tar shard(s) ({len(index)} images, {n_cls} classes)")


def open_image_source(path: str | Path) -> ImageSource:
    """A folder tree, a folder of ``.tar`` shards, one ``.tar``, a brace pattern of shards, a Hugging Face dataset
    (``save_to_disk`` folder, parquet files, ``hf:ID``; :mod:`.hf`), or the embedded data by name
    (``embedded:mnist-train``, ``embedded:mnist-test``, ``embedded:mnist``)."""
    p = str(path)
    if p.startswith("embedded:"):
        return embedded_source(p[len("embedded:") :])
    if is_hf_spec(p):
        return hf_source(p)
    if p.endswith(".tar") or "{" in p:
        return _shard_source(_expand_braces(p))
    root = Path(p)
    if not root.exists():
        raise DataError(f"data path {p} does not exist")
    if root.is_dir():
        tars = sorted(str(t) for t in root.glob("*.tar"))
        if tars:
            return _shard_source(tars)
        return _folder_source(root)
    raise DataError(f"data path {p} is neither a folder nor a .tar shard")
