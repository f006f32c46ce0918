"""Several tokenizers, any mix of families, on one image set under one protocol: the paper's Table 1 comparison
(ResTok against TiTok, One-D-Piece and LlamaGen's VQ) re-measured where every number comes from the same
evaluation transform, the same 8-bit conversion, the same FID Inception and the same evaluator.

Each tokenizer is scored by :func:`~restok.eval.reconstruction.evaluate_reconstruction` (the TiTok reconstruction
protocol) at every budget it supports -- each prefix length of a nested tokenizer in one pass, the one length
otherwise -- into ``OUT/<label>.json`` with its own resumable ``.work`` folder, so an interrupted comparison resumes
per tokenizer and, inside one, per batch of images (every budget of a batch is kept together). Encode and decode
speed (images/s) are timed on the main process on one batch after a warm-up. The table (``table.csv``,
``table.json``, ``table.md``) has one row per (tokenizer, budget); ``rate.png`` plots each metric against tokens per
image, one line per tokenizer.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import ImageDataset
from ..data.records import ImageSource
from ..runtime.files import make_dir, write_json, write_text
from ..runtime.processes import Processes
from .inception import InceptionFeatures
from .plots import plot_comparison
from .protocol import EvaluationError, versions
from .reconstruction import evaluate_reconstruction

__all__ = ["CompareEntry", "TABLE_COLUMNS", "compare_tokenizers", "entry_labels", "measure_speed"]

TABLE_COLUMNS = (
    "tokenizer",
    "family",
    "tokens",
    "codebook_size",
    "rfid",
    "psnr",
    "ssim",
    "lpips",
    "codebook_usage",
    "codebook_entropy",
    "inception_score",
    "encode_images_per_s",
    "decode_images_per_s",
    "num_images",
)


@dataclass(frozen=True)
class CompareEntry:
    """One tokenizer of a comparison: what the user named (a Hub id, folder, file or embedded name) and its label."""

    source: str
    label: str


def entry_labels(sources: Sequence[str]) -> list[CompareEntry]:
    """A file-safe label per tokenizer (its last path part without a weights suffix; repeats numbered)."""
    used: set[str] = set()
    out = []
    for src in sources:
        base = Path(str(src).rstrip("/")).name or str(src)
        base = re.sub(r"\.(safetensors|bin|pt|pth|ckpt)$", "", base)
        base = re.sub(r"[^A-Za-z0-9._+-]", "_", base).strip("._") or "tokenizer"
        label, k = base, 1
        while label in used:  # every label names its own result file and work folder
            k += 1
            label = f"{base}_{k}"
        used.add(label)
        out.append(CompareEntry(str(src), label))
    return out


@torch.no_grad()
def measure_speed(
    tokenizer: Any, images: torch.Tensor, lengths: Sequence[int], repeats: int = 2
) -> dict[int, tuple[float, float]]:
    """Encode and decode images/s of ``images`` (B, 3, S, S) at each length, best of ``repeats`` after one warm-up."""

    def best(fn: Callable[[], Any]) -> float:
        fn()  # warm-up: first-call allocations and kernel choices are not the steady speed
        times = []
        for _ in range(repeats):
            if images.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if images.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return images.shape[0] / max(min(times), 1e-9)

    ids = tokenizer.encode(images)
    enc = best(lambda: tokenizer.encode(images))
    return {k: (enc, best(lambda k=k: tokenizer.decode(ids[:, :k]))) for k in lengths}


def _speed_batch(source: ImageSource, size: int, batch_size: int) -> torch.Tensor:
    """Up to ``batch_size`` readable images from the start of the data (unreadable ones passed over, as the protocol
    does)."""
    dataset = ImageDataset(source, size, train=False)
    out = []
    for j in range(min(len(source), 4 * batch_size)):
        if len(out) == batch_size:
            break
        try:
            out.append(dataset.load(j, 0))
        except Exception:  # noqa: BLE001 - skipped here as in the evaluation, where it is named
            continue
    return torch.stack(out) if out else torch.empty(0)


def _rows(
    entry: CompareEntry, tokenizer: Any, result: dict[str, Any], speed: dict[int, tuple[float, float]] | None
) -> list[dict[str, Any]]:
    """The table rows of one tokenizer's result: one per budget."""
    per_budget = result.get("rate_curve") or [{"tokens": tokenizer.num_tokens, **result}]
    rows = []
    for r in per_budget:
        k = int(r["tokens"])
        enc, dec = (speed or {}).get(k, (None, None))
        rows.append(
            {
                "tokenizer": entry.label,
                "source": entry.source,
                "family": type(tokenizer).family,
                "tokens": k,
                "codebook_size": tokenizer.codebook_size,
                "rfid": r.get("rfid"),
                "psnr": r.get("psnr"),
                "ssim": r.get("ssim"),
                "lpips": r.get("lpips"),
                "codebook_usage": r.get("codebook_usage"),
                "codebook_entropy": r.get("codebook_entropy"),
                "inception_score": r.get("inception_score"),
                "encode_images_per_s": enc,
                "decode_images_per_s": dec,
                "num_images": r.get("num_images", result.get("num_images")),
            }
        )
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def write_table(out: Path, rows: list[dict[str, Any]], notes: dict[str, Any]) -> None:
    """``table.csv``, ``table.json`` (rows and notes) and ``table.md`` of the comparison."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(TABLE_COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(out / "table.csv", buf.getvalue())
    write_json(out / "table.json", {"rows": rows, **notes})
    md = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    md += ["| " + " | ".join(_fmt(r.get(c)) for c in TABLE_COLUMNS) + " |" for r in rows]
    md += ["", *(f"- {k}: {v}" for k, v in notes.items() if isinstance(v, str))]
    write_text(out / "table.md", "\n".join(md) + "\n")


def compare_tokenizers(
    entries: Sequence[CompareEntry],
    load: Callable[[str], Any],
    source: ImageSource,
    inception: InceptionFeatures,
    out: str | Path,
    *,
    num_images: int | None = None,
    batch_size: int = 32,
    allow_partial: bool = False,
    processes: Processes | None = None,
    speed: bool = True,
    announce: Callable[[str], None] = lambda _m: None,
    lpips: Any = None,
) -> dict[str, Any] | None:
    """Score every tokenizer in ``entries`` (loaded with ``load``) on ``source`` at each budget it supports; write
    ``OUT/<label>.json`` per tokenizer and the table and plot; the table on the main process (None elsewhere)."""
    processes = processes or Processes()
    out = Path(out)
    if not entries:
        raise EvaluationError("no tokenizers to compare: pass --tokenizer at least once")
    make_dir(out)
    rows: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        tok = load(entry.source)
        announce(f"[{i + 1}/{len(entries)}] {entry.label} ({type(tok).family}, budgets {list(tok.prefix_lengths)})")
        result = evaluate_reconstruction(
            tok,
            source,
            inception,
            out / f"{entry.label}.json",
            tokens=list(tok.prefix_lengths),
            num_images=num_images,
            batch_size=batch_size,
            allow_partial=allow_partial,
            processes=processes,
            lpips=lpips,
        )
        if result is None:
            continue  # not the main process: the main one writes the table
        measured = None
        if speed:
            images = _speed_batch(source, tok.config.image_size, batch_size)
            measured = measure_speed(tok, images.to(tok.device), tok.prefix_lengths) if len(images) else None
        rows += _rows(entry, tok, result, measured)
        del tok
    if not processes.main:
        return None
    notes = {
        "protocol": "TiTok reconstruction protocol (restok eval reconstruction) for every tokenizer: the same "
        "evaluation transform, 8-bit reconstructions, FID Inception and evaluator",
        "lpips": ("LPIPS-VGG16 (Zhang et al. 2018) of the 8-bit reconstructions: " + json.dumps(lpips.identity))
        if lpips is not None
        else "not measured: pass --lpips with --lpips-vgg FILE (torchvision's vgg16-397923af.pth; no wheel ships it)",
        "speed": f"images/s on one batch of {min(batch_size, len(source))} on the main process, best of 2 after a "
        "warm-up"
        if speed
        else "not measured",
        "versions": versions(),
    }
    write_table(out, rows, notes)
    plot_comparison(out / "rate.png", rows)
    return {"rows": rows, **notes}
