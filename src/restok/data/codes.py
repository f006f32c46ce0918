"""Code sets: pre-extracted token codes for generator training (official recipe: LlamaGen's ``extract_codes_c2i``),
their on-disk format, the checks of its files, and the dataset that reads them.

On-disk format (a folder; ``meta.json`` describes it and is written last, so its presence means complete)::

    meta.json                       format "restok-codes", version, counts, crop mode, tokenizer identity
    shard-00000.labels.npy          (n,) int64 class ids (-1 = unlabelled)
    shard-00000.indices.npy         (n,) int64 position of each image in the source data
    shard-00000.lengths.npy         (n, crops) int16 kept prefix lengths (ragged sets only)
    shard-00000.codes.npy           (n, crops, L) uint16/int32 token ids; written last = shard complete

Crops: ``ten-crop`` (ADM centre crop to 1.1x the size, torchvision TenCrop: corners, centre, and the same
of the mirror, in that order; the official recipe), ``center`` (ADM centre crop and its mirror) or ``center-only``
(the centre crop alone, for data a mirror would change, such as digits).
Unreadable images are left out of their shard and listed in ``meta.json``. Writing a code set (which needs a
tokenizer) is :mod:`restok.train.codes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.hierarchy import prefix_lengths
from ..runtime.inputs import read_npy, read_text_input
from ..runtime.seeds import derive_seed
from .transforms import adm_center_crop, ten_crop

__all__ = [
    "CODES_FORMAT",
    "CODES_VERSION",
    "CROP_MODES",
    "CodesError",
    "fill_past_lengths",
    "crops_of",
    "shard_name",
    "read_meta",
    "meta_prefix_lengths",
    "check_code_files",
    "CodesDataset",
    "collate_codes",
]

CODES_FORMAT = "restok-codes"
CODES_VERSION = 1
CROP_MODES = {"ten-crop": 10, "center": 2, "center-only": 1}


class CodesError(ValueError):
    """A code set that is incomplete, inconsistent or does not match its tokenizer."""


def fill_past_lengths(ids: np.ndarray, lengths: np.ndarray, value: int) -> np.ndarray:
    """``ids`` (..., L) with every position at or past its row's length (``lengths`` (...)) set to ``value``, in place:
    the padding of a ragged token file (-1 in ``restok tokenize`` files, 0 in code sets, whose ids are unsigned)."""
    ids[np.arange(ids.shape[-1]) >= np.asarray(lengths)[..., None]] = value
    return ids


def crops_of(img: Image.Image, size: int, mode: str, crop_range: float = 1.1) -> list[Image.Image]:
    """The crops the extraction encodes for one image, in the stored order."""
    if mode == "ten-crop":
        return ten_crop(adm_center_crop(img, int(size * crop_range)), size)
    if mode == "center":
        c = adm_center_crop(img, size)
        return [c, c.transpose(Image.FLIP_LEFT_RIGHT)]
    if mode == "center-only":
        return [adm_center_crop(img, size)]
    raise CodesError(f"unknown crop mode {mode!r}; choose one of {sorted(CROP_MODES)}")


def shard_name(k: int) -> str:
    """The file-name stem of shard ``k``."""
    return f"shard-{k:05d}"


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and validate ``meta.json`` of a code set."""
    p = Path(path) / "meta.json"
    if not p.exists():
        raise CodesError(f"{path} is not a complete code set: no meta.json (an interrupted extraction? run it again)")
    meta = json.loads(read_text_input(p, "code set record"))
    if meta.get("format") != CODES_FORMAT:
        raise CodesError(f"{p}: not a restok code set (format {meta.get('format')!r})")
    if meta.get("version", 0) > CODES_VERSION:
        raise CodesError(
            f"{p}: format version {meta['version']} is newer than this package's {CODES_VERSION}; upgrade restok"
        )
    return meta


def meta_prefix_lengths(meta: dict[str, Any]) -> tuple[int, ...]:
    """The prefix lengths of the tokenizer a code set records."""
    cfg = (meta.get("tokenizer") or {}).get("config") or {}
    return prefix_lengths(int(meta["num_tokens"]), int(cfg.get("min_tokens", 1)))


# ------------------------------------------------------------------------------------------- checks of the files
def _check_lengths(path: Path, name: str, meta: dict[str, Any], codes: np.ndarray) -> list[str]:
    """A ragged shard's lengths: readable, one per (sample, crop), each a prefix length."""
    try:
        lens = read_npy(path / f"{name}.lengths.npy", "lengths")
    except (OSError, ValueError) as e:
        return [f"{name}: ragged set without readable lengths ({e})"]
    allowed = set(meta_prefix_lengths(meta))
    if lens.shape != codes.shape[:2]:
        return [f"{name}: lengths shape {lens.shape}, expected {codes.shape[:2]}"]
    if lens.size and not set(np.unique(lens).tolist()) <= allowed:
        return [
            f"{name}: lengths {sorted(set(np.unique(lens).tolist()) - allowed)[:5]} are not prefix lengths "
            f"{sorted(allowed)}"
        ]
    return []


def _check_shard(path: Path, k: int, meta: dict[str, Any], seen: set[int]) -> tuple[list[str], int]:
    """Problems of shard ``k`` (shapes, counts, id/label ranges, its images in order and not seen before) and its
    size."""
    sh, problems = meta["shards"][k], []
    L, K, C, S = meta["num_tokens"], meta["codebook_size"], meta["num_crops"], int(meta.get("shard_size", 0)) or None
    name = sh["name"]
    if name != shard_name(k):
        problems.append(f"shard {k} is named {name!r}, expected {shard_name(k)!r}")
    try:
        codes = read_npy(path / f"{name}.codes.npy", "codes", mmap=True)
        labels = read_npy(path / f"{name}.labels.npy", "labels")
        indices = read_npy(path / f"{name}.indices.npy", "indices")
    except (OSError, ValueError) as e:
        return [*problems, f"{name}: cannot read ({e})"], 0
    if codes.ndim != 3 or codes.shape[1:] != (C, L):
        problems.append(f"{name}: codes shape {codes.shape}, expected (n, {C}, {L})")
    if not (codes.shape[0] == labels.shape[0] == indices.shape[0] == sh["count"]):
        problems.append(
            f"{name}: {codes.shape[0]} codes, {labels.shape[0]} labels, {indices.shape[0]} indices, meta says "
            f"{sh['count']}"
        )
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= K):
        problems.append(f"{name}: token ids outside [0, {K})")
    if meta.get("ragged"):
        problems += _check_lengths(path, name, meta, codes)
    ncls = meta["num_classes"]
    if labels.size and ncls and (int(labels.min()) < 0 or int(labels.max()) >= ncls):
        problems.append(f"{name}: labels outside [0, {ncls})")
    if S is not None and indices.size:
        lo, hi = k * S, (k + 1) * S
        if int(indices.min()) < lo or int(indices.max()) >= hi or not bool(np.all(np.diff(indices) > 0)):
            problems.append(
                f"{name}: holds images {int(indices.min())}..{int(indices.max())} (not in order within "
                f"{lo}..{hi - 1}): shards written with another shard size or order"
            )
    dup = seen & set(indices.tolist())
    if dup:
        problems.append(f"{name}: images {sorted(dup)[:5]} also appear in an earlier shard")
    seen |= set(indices.tolist())
    return problems, int(codes.shape[0])


def check_code_files(path: str | Path, meta: dict[str, Any]) -> tuple[list[str], int]:
    """Problems of a code set's files (crop mode, every shard, the counts against ``meta.json``) and its sample
    count."""
    path = Path(path)
    problems: list[str] = []
    if meta.get("crop") not in CROP_MODES or CROP_MODES[meta["crop"]] != meta["num_crops"]:
        problems.append(f"crop {meta.get('crop')!r} with {meta['num_crops']} crops per image is not a known crop mode")
    total, seen = 0, set()
    for k in range(len(meta["shards"])):
        found, n = _check_shard(path, k, meta, seen)
        problems += found
        total += n
    skipped = len(meta.get("skipped", []))
    if "num_images" in meta and total + skipped != meta["num_images"]:
        problems.append(f"{total} samples + {skipped} skipped, but the data had {meta['num_images']} images")
    if total != meta["num_samples"]:
        problems.append(f"{total} samples in shards, meta says {meta['num_samples']}")
    return problems, total


# ------------------------------------------------------------------------------------------- reading for training
@dataclass
class _Shard:
    codes: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray | None = None  # (n, crops) for a ragged set


class CodesDataset(torch.utils.data.Dataset):
    """Token sequences of a code set; each item picks one of its crops from the per-sample seed (the
    official recipe draws a crop uniformly at random every time)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.meta = read_meta(path)
        self.shards = [
            _Shard(
                read_npy(path / f"{s['name']}.codes.npy", "codes", mmap=True),
                read_npy(path / f"{s['name']}.labels.npy", "labels"),
                read_npy(path / f"{s['name']}.lengths.npy", "lengths") if self.meta.get("ragged") else None,
            )
            for s in self.meta["shards"]
        ]
        self.offsets = np.cumsum([0] + [len(s.labels) for s in self.shards])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_classes(self) -> int:
        """Classes of the data the codes came from (0 = unlabelled)."""
        return int(self.meta["num_classes"])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = (key, key) if isinstance(key, int) else key
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        shard, row = self.shards[k], index - int(self.offsets[k])
        n_crops = shard.codes.shape[1]
        crop = derive_seed(seed, "crop") % n_crops
        tokens = torch.from_numpy(np.asarray(shard.codes[row, crop], dtype=np.int64))
        length = int(shard.lengths[row, crop]) if shard.lengths is not None else tokens.shape[0]
        return {"tokens": tokens, "length": length, "label": int(shard.labels[row]), "index": index, "skipped": []}


def collate_codes(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack token sequences and labels."""
    return {
        "tokens": torch.stack([it["tokens"] for it in items]),
        "length": torch.tensor([it.get("length", it["tokens"].shape[0]) for it in items], dtype=torch.long),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "skipped": [],
    }
