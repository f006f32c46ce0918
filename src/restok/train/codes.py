"""Writing and verifying code sets (the format is :mod:`restok.data.codes`): every image of a source tokenized
(each of its crops), sharded and resumable over processes (official recipe: LlamaGen's ``extract_codes_c2i``), and
a code set checked against the tokenizer and the data it claims to come from."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.codes import (
    CODES_FORMAT,
    CODES_VERSION,
    CROP_MODES,
    CodesDataset,
    CodesError,
    check_code_files,
    collate_codes,
    crops_of,
    fill_past_lengths,
    read_meta,
    shard_name,
)
from ..data.images import pil_to_tensor
from ..data.records import ImageSource
from ..data.transforms import decode_image
from ..eval.budgets import encode_adaptive
from ..runtime.chunks import ChunkError, ChunkJob
from ..runtime.files import save_npy, write_json
from ..runtime.inputs import read_npy
from ..runtime.processes import Processes
from ..runtime.progress import progress

if TYPE_CHECKING:
    from ..models.tokenizer import Tokenizer

# the format's names too, so that one import serves whoever writes, checks and reads code sets
__all__ = [
    "extract_codes",
    "check_codes",
    "encode_crops",
    "CodesDataset",
    "CodesError",
    "collate_codes",
    "crops_of",
    "fill_past_lengths",
    "read_meta",
    "CROP_MODES",
    "CODES_FORMAT",
]


def encode_crops(
    tokenizer: Tokenizer, crops: torch.Tensor, n_images: int, target_psnr: float | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Ids (n, crops, L) of the crops (n * crops, 3, S, S) of ``n_images`` images; with ``target_psnr``, each crop's
    shortest prefix reaching it (codes past it 0) and the lengths (n, crops)."""
    L = tokenizer.num_tokens
    if target_psnr is None:
        return tokenizer.encode(crops).cpu().numpy().reshape(n_images, -1, L), None
    res = encode_adaptive(tokenizer, crops, psnr=target_psnr)
    lens = res.lengths.numpy().reshape(n_images, -1)  # (n, crops)
    ids = res.ids.numpy().reshape(n_images, -1, L)  # (n, crops, L)
    return fill_past_lengths(ids, lens, 0), lens.astype(np.int16)


class _ShardWriter:
    """The codes of one shard, gathered batch by batch, then written (the codes file last: it marks the shard done)."""

    def __init__(self, tokenizer: Tokenizer, crop: str, batch_size: int, target_psnr: float | None) -> None:
        self.tok, self.crop, self.batch_size, self.target_psnr = tokenizer, crop, batch_size, target_psnr
        self.dtype = np.uint16 if tokenizer.codebook_size <= 65536 else np.int32
        self.codes: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.labels: list[int] = []
        self.indices: list[int] = []
        self.pending: list[tuple[int, int, list[torch.Tensor]]] = []  # (index, label, crops) not encoded yet

    def add(self, index: int, label: int, crops: list[torch.Tensor]) -> None:
        """One readable image's crops; a full batch is encoded at once."""
        self.pending.append((index, label, crops))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Encode the images waiting, all crops in one batch."""
        if not self.pending:
            return
        x = torch.stack([c for _, _, crops in self.pending for c in crops]).to(self.tok.device)  # (b * crops, 3, S, S)
        ids, lens = encode_crops(self.tok, x, len(self.pending), self.target_psnr)
        self.codes.append(ids.astype(self.dtype))
        if lens is not None:
            self.lengths.append(lens)
        self.indices += [i for i, _, _ in self.pending]
        self.labels += [y for _, y, _ in self.pending]
        self.pending.clear()

    def write(self, out: Path, k: int, marker: Path) -> None:
        """The shard's files; the codes file (``marker``) last."""
        self.flush()
        n_crops, L = CROP_MODES[self.crop], self.tok.num_tokens
        save_npy(out / f"{shard_name(k)}.labels.npy", np.asarray(self.labels, dtype=np.int64))
        save_npy(out / f"{shard_name(k)}.indices.npy", np.asarray(self.indices, dtype=np.int64))
        if self.target_psnr is not None:
            lens = np.concatenate(self.lengths) if self.lengths else np.zeros((0, n_crops), np.int16)
            save_npy(out / f"{shard_name(k)}.lengths.npy", lens)
        save_npy(marker, np.concatenate(self.codes) if self.codes else np.zeros((0, n_crops, L), self.dtype))


def _extract_shard(
    tokenizer: Tokenizer,
    source: ImageSource,
    k: int,
    shard_size: int,
    crop: str,
    batch_size: int,
    target_psnr: float | None,
    job: ChunkJob,
    bar: Any,
    skipped: list[str],
) -> None:
    """Encode the images of shard ``k`` and write it (unreadable images skipped and named)."""
    writer = _ShardWriter(tokenizer, crop, batch_size, target_psnr)
    for i in range(k * shard_size, min((k + 1) * shard_size, len(source))):
        rec = source.records[i]
        bar.update(1)
        try:
            crops = crops_of(decode_image(rec.read()), tokenizer.config.image_size, crop)
        except Exception as e:  # noqa: BLE001 - unreadable files are skipped and named
            skipped.append(f"{rec.name} ({type(e).__name__}: {e})")
            continue
        writer.add(i, rec.label, [pil_to_tensor(c) for c in crops])
    writer.write(job.work, k, job.path(k))


def _meta(
    tokenizer: Tokenizer,
    source: ImageSource,
    out: Path,
    crop: str,
    shard_size: int,
    target_psnr: float | None,
    identity: dict[str, Any],
    skipped: list[str],
) -> dict[str, Any]:
    """``meta.json`` of a finished code set."""
    n_shards = math.ceil(len(source) / shard_size)
    counts = [len(read_npy(out / f"{shard_name(k)}.labels.npy", "labels", follow_links=False)) for k in range(n_shards)]
    return {
        "format": CODES_FORMAT,
        "version": CODES_VERSION,
        "num_samples": sum(counts),
        "num_tokens": tokenizer.num_tokens,
        "codebook_size": tokenizer.codebook_size,
        "image_size": tokenizer.config.image_size,
        "crop": crop,
        "num_crops": CROP_MODES[crop],
        "num_classes": source.num_classes,
        "class_names": source.class_names,
        "shard_size": shard_size,
        "num_images": len(source),
        "ragged": target_psnr is not None,
        "target_psnr": target_psnr,
        "shards": [{"name": shard_name(k), "count": c} for k, c in enumerate(counts)],
        "tokenizer": identity,
        "tokenizer_family": type(tokenizer).family,  # how its codes are ordered: the generator that fits them
        "data": source.description,
        "skipped": skipped,
    }


def extract_codes(
    tokenizer: Tokenizer,
    source: ImageSource,
    out: str | Path,
    crop: str = "ten-crop",
    batch_size: int = 32,
    shard_size: int = 10_000,
    processes: Processes | None = None,
    target_psnr: float | None = None,
) -> dict[str, Any] | None:
    """Encode every image of ``source`` (each crop) and write the shards this process owns (k % world == rank);
    shards already complete are skipped (resume), and a rerun under other settings (tokenizer, crop, shard size, data,
    batch size) is refused. The main process writes ``meta.json`` once every process is done, and returns it.

    With ``target_psnr`` the set is ragged: each crop keeps the shortest prefix reaching that PSNR
    (:func:`restok.eval.budgets.encode_adaptive`); ``shard-*.lengths.npy`` (n, crops) holds the lengths and the codes
    past them are 0."""
    processes = processes or Processes()
    if crop not in CROP_MODES:
        raise CodesError(f"unknown crop mode {crop!r}; choose one of {sorted(CROP_MODES)}")
    if not isinstance(shard_size, int) or shard_size < 1 or not isinstance(batch_size, int) or batch_size < 1:
        raise CodesError(f"shard size and batch size must be integers >= 1, got {shard_size!r} and {batch_size!r}")
    out = Path(out)
    if (out / "meta.json").exists():
        raise CodesError(f"{out} already holds a complete code set (meta.json); choose another folder")
    source.require_labels("a code set of a labelled source (its labels condition the generator)")
    identity = tokenizer.identity()
    settings = {
        "format": CODES_FORMAT,
        "version": CODES_VERSION,
        "tokenizer": identity,
        "crop": crop,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "data": source.description,
        "num_images": len(source),
        "target_psnr": target_psnr,
    }
    try:
        job = ChunkJob(
            out,
            settings,
            math.ceil(len(source) / shard_size),
            processes.rank,
            processes.world,
            marker="shard-{:05d}.codes.npy",
            record="extract-settings.json",
        )
        mine, skipped = job.todo(), []
        total = sum(min(shard_size, len(source) - k * shard_size) for k in mine)
        bar = progress(None, "extract codes", total=total, enabled=processes.shows_progress, unit="img")
        for k in mine:
            _extract_shard(tokenizer, source, k, shard_size, crop, batch_size, target_psnr, job, bar, skipped)
        bar.close()
        job.note_skipped(skipped)
        if not job.finish(processes.barrier):
            return None
    except ChunkError as e:
        raise CodesError(str(e)) from None
    meta = _meta(tokenizer, source, out, crop, shard_size, target_psnr, identity, job.skipped())
    write_json(out / "meta.json", meta)
    return meta


# ------------------------------------------------------------------------------------------- verification
def _tokenizer_problems(meta: dict[str, Any], tokenizer: Tokenizer, source: ImageSource | None) -> list[str]:
    """Whether the code set was made by this tokenizer (weights' SHA-256, shape of its codes) from this data."""
    problems = []
    recorded = meta.get("tokenizer") or {}
    if tokenizer is not None and recorded.get("sha256") and tokenizer.fingerprint() != recorded["sha256"]:
        problems.append(
            f"the code set was extracted with the tokenizer {recorded.get('source')!r} (sha256 "
            f"{recorded['sha256'][:12]}...), not this one (sha256 {tokenizer.fingerprint()[:12]}...)"
        )
    if source is not None and meta.get("data") and source.description != meta["data"]:
        problems.append(f"the code set was extracted from {meta['data']!r}, not from {source.description!r}")
    if tokenizer is not None:
        L, K, S = meta["num_tokens"], meta["codebook_size"], meta["image_size"]
        if tokenizer.num_tokens != L or tokenizer.codebook_size != K or tokenizer.config.image_size != S:
            problems.append(
                f"tokenizer ({tokenizer.num_tokens} tokens, {tokenizer.codebook_size} codes, "
                f"{tokenizer.config.image_size} px) "
                f"does not match the code set ({L} tokens, {K} codes, {S} px)"
            )
    return problems


def _verify_rows(
    path: Path, meta: dict[str, Any], tokenizer: Tokenizer, source: ImageSource, num_verify: int
) -> tuple[list[str], int]:
    """Re-encode ``num_verify`` images spread evenly over the whole set (every shard alike) and compare their ids."""
    rows = [(k, r) for k, sh in enumerate(meta["shards"]) for r in range(sh["count"])]
    picks = [rows[(i * len(rows)) // num_verify] for i in range(min(num_verify, len(rows)))] if num_verify > 0 else []
    problems = []
    for k, r in picks:
        name = shard_name(k)
        codes = read_npy(path / f"{name}.codes.npy", "codes", mmap=True)
        index = int(read_npy(path / f"{name}.indices.npy", "indices")[r])
        crops = crops_of(decode_image(source.records[index].read()), meta["image_size"], meta["crop"])
        x = torch.stack([pil_to_tensor(c) for c in crops]).to(tokenizer.device)  # (crops, 3, S, S)
        ids, _ = encode_crops(tokenizer, x, 1, meta["target_psnr"] if meta.get("ragged") else None)
        if not np.array_equal(ids[0], np.asarray(codes[r], dtype=np.int64)):
            problems.append(f"{name} row {r}: re-encoding source image {index} gives different ids")
    return problems, len(picks)


def check_codes(
    path: str | Path, tokenizer: Tokenizer | None = None, source: ImageSource | None = None, num_verify: int = 4
) -> dict[str, Any]:
    """Validate a code set: shard shapes, dtypes, id and label ranges, counts and the shard layout (shard k holds
    images k*shard_size ... in order, each once); with ``tokenizer``, that it is the recorded one (config and weights'
    SHA-256), and with ``source`` too, that it is the recorded data and that re-encoding ``num_verify`` images, spread
    over every shard, gives the stored ids."""
    path = Path(path)
    meta = read_meta(path)
    problems, total = check_code_files(path, meta)
    problems += _tokenizer_problems(meta, tokenizer, source)
    verified = 0
    if tokenizer is not None and source is not None and not problems:
        found, verified = _verify_rows(path, meta, tokenizer, source, num_verify)
        problems += found
    if problems:
        raise CodesError(f"code set {path} failed {len(problems)} check(s):\n  " + "\n  ".join(problems[:20]))
    return {"num_samples": total, "num_shards": len(meta["shards"]), "verified": verified, "meta": meta}
