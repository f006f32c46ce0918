"""Pre-extracted token codes for generator training (official recipe: LlamaGen's ``extract_codes_c2i``).

On-disk format (a folder; ``meta.json`` describes it and is written last, so its presence means complete)::

    meta.json                       format "restok-codes", version, counts, crop mode, tokenizer identity
    shard-00000.labels.npy          (n,) int64 class ids (-1 = unlabelled)
    shard-00000.indices.npy         (n,) int64 position of each image in the source data
    shard-00000.codes.npy           (n, crops, L) uint16/int32 token ids; written last = shard complete

Crops: ``ten-crop`` (ADM centre crop to 1.1x the size, torchvision TenCrop: corners, centre, and the same
of the mirror, in that order; the official recipe), ``center`` (ADM centre crop and its mirror) or ``center-only``
(the centre crop alone, for data a mirror would change, such as digits).
Unreadable images are left out of their shard and listed in ``meta.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from .chunks import ChunkError, ChunkJob
from .data import ImageSource, adm_center_crop, decode_image, derive_seed, pil_to_tensor, ten_crop
from .io import save_npy, write_json

__all__ = ["fill_past_lengths", "CODES_FORMAT", "CROP_MODES", "CodesError", "crops_of", "extract_codes", "check_codes", "CodesDataset", "read_meta"]

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


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def extract_codes(
    tokenizer: Any,
    source: ImageSource,
    out: str | Path,
    crop: str = "ten-crop",
    batch_size: int = 32,
    shard_size: int = 10_000,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] | None = None,
    progress: bool = True,
    target_psnr: float | None = None,
) -> dict[str, Any] | None:
    """Encode every image of ``source`` (each crop) and write the shards this process owns (k % world ==
    rank); shards already complete are skipped (resume), and a rerun under other settings (tokenizer, crop,
    shard size, data, batch size) is refused. Rank 0 writes ``meta.json`` after ``barrier``.

    With ``target_psnr`` the set is ragged: each crop keeps the shortest prefix reaching that PSNR
    (:meth:`~restok.ResTok.encode_adaptive`); ``shard-*.lengths.npy`` (n, crops) holds the lengths and the codes
    past them are 0."""
    from tqdm.auto import tqdm

    if crop not in CROP_MODES:
        raise CodesError(f"unknown crop mode {crop!r}; choose one of {sorted(CROP_MODES)}")
    if not isinstance(shard_size, int) or shard_size < 1 or not isinstance(batch_size, int) or batch_size < 1:
        raise CodesError(f"shard size and batch size must be integers >= 1, got {shard_size!r} and {batch_size!r}")
    out = Path(out)
    if (out / "meta.json").exists():
        raise CodesError(f"{out} already holds a complete code set (meta.json); choose another folder")
    size, L, K = tokenizer.config.image_size, tokenizer.num_tokens, tokenizer.codebook_size
    dtype = np.uint16 if K <= 65536 else np.int32
    device = tokenizer.device
    n_shards = math.ceil(len(source) / shard_size)
    identity = tokenizer.identity()
    settings = {"format": CODES_FORMAT, "version": CODES_VERSION, "tokenizer": identity, "crop": crop, "shard_size": shard_size,
                "batch_size": batch_size, "data": source.description, "num_images": len(source), "target_psnr": target_psnr}
    try:
        job = ChunkJob(out, settings, n_shards, rank, world, marker="shard-{:05d}.codes.npy", record="extract-settings.json")
    except ChunkError as e:
        raise CodesError(str(e)) from None
    mine = job.todo()
    skipped_here: list[str] = []
    bar = tqdm(total=sum(min(shard_size, len(source) - k * shard_size) for k in mine), disable=not progress, desc="extract codes", unit="img")
    for k in mine:
        codes, labels, indices, lengths = [], [], [], []
        batch_imgs: list[torch.Tensor] = []
        batch_meta: list[tuple[int, int]] = []

        def flush() -> None:
            if not batch_imgs:
                return
            x = torch.stack(batch_imgs).to(device)  # (b * crops, 3, S, S)
            if target_psnr is None:
                ids = tokenizer.encode(x).cpu().numpy().reshape(len(batch_meta), -1, L)
            else:
                res = tokenizer.encode_adaptive(x, psnr=target_psnr)
                lens = res.lengths.numpy().reshape(len(batch_meta), -1)  # (b, crops)
                ids = res.ids.numpy().reshape(len(batch_meta), -1, L)
                fill_past_lengths(ids, lens, 0)
                lengths.append(lens.astype(np.int16))
            codes.append(ids.astype(dtype))
            labels.extend(m[1] for m in batch_meta)
            indices.extend(m[0] for m in batch_meta)
            batch_imgs.clear()
            batch_meta.clear()

        for i in range(k * shard_size, min((k + 1) * shard_size, len(source))):
            rec = source.records[i]
            try:
                crops = crops_of(decode_image(rec.read()), size, crop)
            except Exception as e:  # noqa: BLE001 - unreadable files are skipped and named
                skipped_here.append(f"{rec.name} ({type(e).__name__}: {e})")
                bar.update(1)
                continue
            batch_imgs.extend(pil_to_tensor(c) for c in crops)
            batch_meta.append((i, rec.label))
            if len(batch_meta) >= batch_size:
                flush()
            bar.update(1)
        flush()
        arr = np.concatenate(codes) if codes else np.zeros((0, CROP_MODES[crop], L), dtype)
        save_npy(out / f"{_shard_name(k)}.labels.npy", np.asarray(labels, dtype=np.int64))
        save_npy(out / f"{_shard_name(k)}.indices.npy", np.asarray(indices, dtype=np.int64))
        if target_psnr is not None:
            lens_arr = np.concatenate(lengths) if lengths else np.zeros((0, CROP_MODES[crop]), np.int16)
            save_npy(out / f"{_shard_name(k)}.lengths.npy", lens_arr)
        save_npy(job.path(k), arr)  # last: marks the shard complete
    bar.close()
    job.note_skipped(skipped_here)
    try:
        if not job.finish(barrier):
            return None
    except ChunkError as e:
        raise CodesError(str(e)) from None
    skipped = job.skipped()
    counts = [int(np.load(out / f"{_shard_name(k)}.labels.npy").shape[0]) for k in range(n_shards)]
    meta = {
        "format": CODES_FORMAT,
        "version": CODES_VERSION,
        "num_samples": sum(counts),
        "num_tokens": L,
        "codebook_size": K,
        "image_size": size,
        "crop": crop,
        "num_crops": CROP_MODES[crop],
        "num_classes": source.num_classes,
        "class_names": source.class_names,
        "shard_size": shard_size,
        "num_images": len(source),
        "ragged": target_psnr is not None,
        "target_psnr": target_psnr,
        "shards": [{"name": _shard_name(k), "count": c} for k, c in enumerate(counts)],
        "tokenizer": identity,
        "data": source.description,
        "skipped": skipped,
    }
    write_json(out / "meta.json", meta)
    return meta


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and validate ``meta.json`` of a code set."""
    p = Path(path) / "meta.json"
    if not p.exists():
        raise CodesError(f"{path} is not a complete code set: no meta.json (an interrupted extraction? run it again)")
    meta = json.loads(p.read_text())
    if meta.get("format") != CODES_FORMAT:
        raise CodesError(f"{p}: not a restok code set (format {meta.get('format')!r})")
    if meta.get("version", 0) > CODES_VERSION:
        raise CodesError(f"{p}: format version {meta['version']} is newer than this package's {CODES_VERSION}; upgrade restok")
    return meta


def _prefix_lengths(meta: dict[str, Any]) -> tuple[int, ...]:
    """The prefix lengths of the tokenizer a code set records."""
    from .hierarchy import prefix_lengths

    cfg = (meta.get("tokenizer") or {}).get("config") or {}
    return prefix_lengths(int(meta["num_tokens"]), int(cfg.get("min_tokens", 1)))


def check_codes(path: str | Path, tokenizer: Any = None, source: ImageSource | None = None, num_verify: int = 4) -> dict[str, Any]:
    """Validate a code set: shard shapes, dtypes, id and label ranges, counts and the shard layout (shard k holds
    images k*shard_size ... in order, each once); with ``tokenizer``, that it is the recorded one (config and weights'
    SHA-256), and with ``source`` too, that it is the recorded data and that re-encoding ``num_verify`` images gives
    the stored ids."""
    path = Path(path)
    meta = read_meta(path)
    problems: list[str] = []
    L, K, C = meta["num_tokens"], meta["codebook_size"], meta["num_crops"]
    total = 0
    S = int(meta.get("shard_size", 0)) or None
    seen: set[int] = set()
    if meta.get("crop") not in CROP_MODES or CROP_MODES[meta["crop"]] != C:
        problems.append(f"crop {meta.get('crop')!r} with {C} crops per image is not a known crop mode")
    for k, sh in enumerate(meta["shards"]):
        if sh["name"] != _shard_name(k):
            problems.append(f"shard {k} is named {sh['name']!r}, expected {_shard_name(k)!r}")
        name = sh["name"]
        try:
            codes = np.load(path / f"{name}.codes.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(path / f"{name}.labels.npy", allow_pickle=False)
            indices = np.load(path / f"{name}.indices.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            problems.append(f"{name}: cannot read ({e})")
            continue
        if codes.ndim != 3 or codes.shape[1:] != (C, L):
            problems.append(f"{name}: codes shape {codes.shape}, expected (n, {C}, {L})")
        if not (codes.shape[0] == labels.shape[0] == indices.shape[0] == sh["count"]):
            problems.append(f"{name}: {codes.shape[0]} codes, {labels.shape[0]} labels, {indices.shape[0]} indices, meta says {sh['count']}")
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= K):
            problems.append(f"{name}: token ids outside [0, {K})")
        if meta.get("ragged"):
            try:
                lens = np.load(path / f"{name}.lengths.npy", allow_pickle=False)
            except (OSError, ValueError) as e:
                problems.append(f"{name}: ragged set without readable lengths ({e})")
                lens = None
            if lens is not None:
                allowed = set(_prefix_lengths(meta))
                if lens.shape != codes.shape[:2]:
                    problems.append(f"{name}: lengths shape {lens.shape}, expected {codes.shape[:2]}")
                elif lens.size and not set(np.unique(lens).tolist()) <= allowed:
                    problems.append(f"{name}: lengths {sorted(set(np.unique(lens).tolist()) - allowed)[:5]} are not prefix lengths {sorted(allowed)}")
        ncls = meta["num_classes"]
        if labels.size and ncls and (int(labels.min()) < 0 or int(labels.max()) >= ncls):
            problems.append(f"{name}: labels outside [0, {ncls})")
        if S is not None and indices.size:
            lo, hi = k * S, (k + 1) * S
            if int(indices.min()) < lo or int(indices.max()) >= hi or not bool(np.all(np.diff(indices) > 0)):
                problems.append(f"{name}: holds images {int(indices.min())}..{int(indices.max())} (not in order within "
                                f"{lo}..{hi - 1}): shards written with another shard size or order")
        dup = seen & set(indices.tolist())
        if dup:
            problems.append(f"{name}: images {sorted(dup)[:5]} also appear in an earlier shard")
        seen |= set(indices.tolist())
        total += int(codes.shape[0])
    if "num_images" in meta and total + len(meta.get("skipped", [])) != meta["num_images"]:
        problems.append(f"{total} samples + {len(meta.get('skipped', []))} skipped, but the data had {meta['num_images']} images")
    if total != meta["num_samples"]:
        problems.append(f"{total} samples in shards, meta says {meta['num_samples']}")
    verified = 0
    recorded = meta.get("tokenizer") or {}
    if tokenizer is not None and recorded.get("sha256") and tokenizer.fingerprint() != recorded["sha256"]:
        problems.append(f"the code set was extracted with the tokenizer {recorded.get('source')!r} (sha256 "
                        f"{recorded['sha256'][:12]}...), not this one (sha256 {tokenizer.fingerprint()[:12]}...)")
    if source is not None and meta.get("data") and source.description != meta["data"]:
        problems.append(f"the code set was extracted from {meta['data']!r}, not from {source.description!r}")
    if tokenizer is not None:
        if tokenizer.num_tokens != L or tokenizer.codebook_size != K or tokenizer.config.image_size != meta["image_size"]:
            problems.append(
                f"tokenizer ({tokenizer.num_tokens} tokens, {tokenizer.codebook_size} codes, {tokenizer.config.image_size} px) "
                f"does not match the code set ({L} tokens, {K} codes, {meta['image_size']} px)"
            )
        elif source is not None and meta["shards"]:
            name = meta["shards"][0]["name"]
            codes = np.load(path / f"{name}.codes.npy", allow_pickle=False)
            indices = np.load(path / f"{name}.indices.npy", allow_pickle=False)
            device = next(tokenizer.parameters()).device
            for row in range(min(num_verify, codes.shape[0])):
                crops = crops_of(decode_image(source.records[int(indices[row])].read()), meta["image_size"], meta["crop"])
                x = torch.stack([pil_to_tensor(c) for c in crops]).to(device)
                if meta.get("ragged"):
                    res = tokenizer.encode_adaptive(x, psnr=meta["target_psnr"])
                    ids = res.ids.numpy()
                    fill_past_lengths(ids, res.lengths.numpy(), 0)
                else:
                    ids = tokenizer.encode(x).cpu().numpy()
                if not np.array_equal(ids, codes[row].astype(np.int64)):
                    problems.append(f"{name} row {row}: re-encoding source image {int(indices[row])} gives different ids")
                verified += 1
    if problems:
        raise CodesError(f"code set {path} failed {len(problems)} check(s):\n  " + "\n  ".join(problems[:20]))
    return {"num_samples": total, "num_shards": len(meta["shards"]), "verified": verified, "meta": meta}


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
                np.load(path / f"{s['name']}.codes.npy", mmap_mode="r", allow_pickle=False),
                np.load(path / f"{s['name']}.labels.npy", allow_pickle=False),
                np.load(path / f"{s['name']}.lengths.npy", allow_pickle=False) if self.meta.get("ragged") else None,
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
