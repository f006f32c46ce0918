"""Several tokenizers, any mix of families, on one image set under one protocol: the paper's Table 1 comparison
(ResTok against TiTok, One-D-Piece and LlamaGen's VQ) re-measured where every number comes from the same
evaluation transform, the same 8-bit conversion, the same FID Inception and the same evaluator.

Each tokenizer is scored by :func:`~restok.eval.reconstruction.evaluate_reconstruction` (the TiTok reconstruction
protocol) at every budget it supports -- each prefix length of a nested tokenizer in one pass, the one length
otherwise -- into ``OUT/<label>.json`` with its own resumable ``.work`` folder, so an interrupted comparison resumes
per tokenizer and, inside one, per batch of images (every budget of a batch is kept together). The table
(``table.csv``, ``table.json``, ``table.md``) has one row per (tokenizer, budget) and holds only what the images
determine, so two runs (or a run and its resume) write the same bytes; ``rate.png`` plots each metric against tokens
per image, one line per tokenizer. Encode and decode speed (images/s) depend on the machine and its load, so they
go to their own files (``speed.json``, ``speed.md``): timed on the main process on at most one batch of the
evaluated images, after a warm-up, budgets in order until a time limit is spent.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.datasets import ImageDataset
from ..data.records import ImageSource
from ..runtime.files import json_text, write_text
from ..runtime.processes import Processes
from ..runtime.requests import field as field_name
from .context import EvalContext, EvalOptions
from .inception import InceptionFeatures
from .metrics import RECONSTRUCTION, LPIPSDistance, Metric
from .plots import plot_comparison
from .protocol import EvaluationError, versions
from .reconstruction import ReconstructionJob, reconstruction_metrics

if TYPE_CHECKING:
    from ..models.tokenizer import Tokenizer

__all__ = [
    "CompareEntry",
    "TABLE_COLUMNS",
    "compare_tokenizers",
    "compare_over",
    "entry_labels",
    "measure_speed",
    "write_table",
    "table_files",
    "speed_files",
]

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
    "num_images",
)
SPEED_COLUMNS = ("tokenizer", "tokens", "encode_images_per_s", "decode_images_per_s", "images")
# the comparison's own files: a tokenizer is never given a label whose result file would be one of them
RESERVED_LABELS = ("table", "rate", "speed")


@dataclass(frozen=True)
class CompareEntry:
    """One tokenizer of a comparison: what the user named (a Hub id, folder, file or embedded name) and its label."""

    source: str
    label: str


def entry_labels(sources: Sequence[str]) -> list[CompareEntry]:
    """A file-safe label per tokenizer (its last path part without a weights suffix; repeats, and the names of the
    comparison's own files, numbered)."""
    used: set[str] = set(RESERVED_LABELS)
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
    tokenizer: Tokenizer,
    images: torch.Tensor,
    lengths: Sequence[int],
    repeats: int = 2,
    seconds: float | None = None,
) -> dict[int, tuple[float, float]]:
    """Encode and decode images/s of ``images`` (B, 3, S, S) at each length, best of ``repeats`` after one warm-up;
    with ``seconds``, lengths (in order) are timed only until that much time is spent (the rest are left out)."""
    start = time.perf_counter()

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
    timed = {}
    for k in lengths:
        if seconds is not None and timed and time.perf_counter() - start > seconds:
            break
        timed[k] = (enc, best(lambda k=k: tokenizer.decode(ids[:, :k])))
    return timed


def _speed_batch(source: ImageSource, size: int, batch_size: int, num_images: int | None) -> torch.Tensor:
    """Up to ``batch_size`` readable images of the evaluated ones (the first ``num_images``; unreadable ones passed
    over, as the protocol does)."""
    dataset = ImageDataset(source, size, train=False)
    evaluated = min(len(source), num_images or len(source))
    batch_size = min(batch_size, evaluated)
    out = []
    for j in range(min(evaluated, 4 * batch_size)):
        if len(out) == batch_size:
            break
        try:
            out.append(dataset.load(j, 0))
        except Exception:  # noqa: BLE001 - skipped here as in the evaluation, where it is named
            continue
    return torch.stack(out) if out else torch.empty(0)


def _rows(
    entry: CompareEntry, tokenizer: Tokenizer, result: dict[str, Any], extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The table rows of one tokenizer's result: one per budget (with the ``extra`` columns of optional metrics)."""
    per_budget = result.get("rate_curve") or [{"tokens": tokenizer.num_tokens, **result}]
    rows = []
    for r in per_budget:
        k = int(r["tokens"])
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
                "num_images": r.get("num_images", result.get("num_images")),
                **{key: r.get(key) for key in extra},
            }
        )
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table_files(rows: list[dict[str, Any]], notes: dict[str, Any], extra: Sequence[str] = ()) -> dict[str, str]:
    """The comparison's table as file texts: ``table.csv``, ``table.json`` (rows and notes) and ``table.md``;
    ``extra``: the columns of optional metrics, after the protocol's."""
    columns = [*TABLE_COLUMNS, *extra]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    md += ["", *(f"- {k}: {v}" for k, v in notes.items() if isinstance(v, str))]
    return {
        "table.csv": buf.getvalue(),
        "table.json": json_text({"rows": rows, **notes}, "table.json"),
        "table.md": "\n".join(md) + "\n",
    }


def write_table(out: Path, rows: list[dict[str, Any]], notes: dict[str, Any], extra: Sequence[str] = ()) -> None:
    """The comparison's files: ``rate.png`` (each metric against tokens per image, one line per tokenizer; without
    matplotlib, none), then the :func:`table_files`."""
    plot_comparison(out / "rate.png", rows)
    for name, text in table_files(rows, notes, extra).items():
        write_text(out / name, text)


def _notes(metrics: Sequence[Metric]) -> dict[str, Any]:
    """What the table's numbers are: the protocol, LPIPS's weights, the optional metrics, the versions."""
    lpips = next((m for m in metrics if isinstance(m, LPIPSDistance)), None)
    return {
        "protocol": "TiTok reconstruction protocol (restok eval reconstruction) for every tokenizer: the same "
        "evaluation transform, 8-bit reconstructions, FID Inception and evaluator",
        "lpips": ("LPIPS-VGG16 (Zhang et al. 2018) of the 8-bit reconstructions: " + json.dumps(lpips.work_identity()))
        if lpips is not None
        else "not measured: pass --lpips with --lpips-vgg FILE (torchvision's vgg16-397923af.pth; no wheel ships it)",
        **{m.name: m.describe(RECONSTRUCTION) for m in metrics if m.optional and m.describe(RECONSTRUCTION)},
        "versions": versions(),
    }


@dataclass
class _Table:
    """What every row of a comparison is measured with, and the rows so far (quality, and speed apart)."""

    num_images: int | None
    speed: bool
    metrics: list[Metric]
    extra: list[str]  # the columns of the optional metrics
    speed_seconds: float = 60.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    speed_rows: list[dict[str, Any]] = field(default_factory=list)
    speed_batch: int = 0

    def add(self, ctx: EvalContext, entry: CompareEntry, result: dict[str, Any]) -> None:
        """A tokenizer's result as rows, one per budget (and its encode/decode speed when asked)."""
        tok = ctx.tokenizer
        self.rows += _rows(entry, tok, result, self.extra)
        if not self.speed:
            return
        images = _speed_batch(ctx.source, tok.config.image_size, ctx.batch_size, self.num_images)
        if not len(images):
            return
        self.speed_batch = max(self.speed_batch, len(images))
        timed = measure_speed(tok, images.to(tok.device), tok.prefix_lengths, seconds=self.speed_seconds)
        for k in tok.prefix_lengths:
            enc, dec = timed.get(k, (None, None))
            self.speed_rows.append(dict(zip(SPEED_COLUMNS, (entry.label, k, enc, dec, len(images)))))


def speed_files(table: _Table, device: str) -> dict[str, str]:
    """``speed.json`` and ``speed.md``: images/s per (tokenizer, budget), apart from the table (they vary by run)."""
    notes = {
        "speed": f"images/s on one batch of at most {table.speed_batch} of the evaluated images on the main process "
        f"({device}), best of 2 after a warm-up; budgets timed in order until {table.speed_seconds:g} s per tokenizer "
        "were spent (the rest: -)",
        "versions": versions(),
    }
    md = ["| " + " | ".join(SPEED_COLUMNS) + " |", "|" + "---|" * len(SPEED_COLUMNS)]
    md += ["| " + " | ".join(_fmt(r.get(c)) for c in SPEED_COLUMNS) + " |" for r in table.speed_rows]
    return {
        "speed.json": json_text({"rows": table.speed_rows, **notes}, "speed.json"),
        "speed.md": "\n".join([*md, "", f"- speed: {notes['speed']}"]) + "\n",
    }


def write_comparison(out: Path, ctx: EvalContext, table: _Table) -> dict[str, Any]:
    """The comparison's plot (``rate.png``), table (``table.csv``, ``table.json``, ``table.md``) and, when timed, speeds
    (``speed.json``, ``speed.md``) in ``out``: every text made first, then the files written."""
    notes = _notes(table.metrics)
    files = table_files(table.rows, notes, table.extra)
    if table.speed:
        files.update(speed_files(table, str(ctx.device)))
    plot_comparison(out / "rate.png", table.rows)
    for name, text in files.items():
        write_text(out / name, text)
    return {"rows": table.rows, "speed": table.speed_rows, **notes}


def compare_over(
    ctx: EvalContext,
    entries: Sequence[CompareEntry],
    out: Path,
    *,
    num_images: int | None = None,
    speed: bool = True,
    speed_seconds: float = 60.0,
    metrics: Sequence[Metric] | None = None,
    announce: Callable[[str], None] = lambda _m: None,
    load: Callable[[str], Tokenizer] | None = None,
) -> dict[str, Any] | None:
    """The comparison over ``ctx`` -- its data, each entry's tokenizer in turn, loaded by ``load`` (default: any
    registered family on the context's device) when its turn comes (see :func:`compare_tokenizers`); ``metrics``
    default to the protocol's."""
    if not entries:
        raise EvaluationError(f"no tokenizers to compare: pass {field_name('tokenizers')} at least once")
    chosen = list(metrics) if metrics is not None else reconstruction_metrics()
    extra = [
        k for m in chosen if m.optional and not isinstance(m, LPIPSDistance) for k in m.result_keys(RECONSTRUCTION)
    ]
    table = _Table(num_images, speed, chosen, extra, speed_seconds)
    ctx.source  # noqa: B018 - a wrong data path fails before any model is loaded
    for i, entry in enumerate(entries):
        row = ctx.with_tokenizer(entry.source if load is None else functools.partial(load, entry.source))
        tok = row.tokenizer
        announce(f"[{i + 1}/{len(entries)}] {entry.label} ({type(tok).family}, budgets {list(tok.prefix_lengths)})")
        then = functools.partial(table.add, row, entry)  # on the main process, the result becomes the table's rows
        job = ReconstructionJob(
            row, out / f"{entry.label}.json", list(tok.prefix_lengths), num_images, chosen, then=then
        )
        row.evaluate(job.out, job)
        del tok, row, job
    return write_comparison(out, ctx, table) if ctx.processes.main else None


def compare_tokenizers(
    entries: Sequence[CompareEntry],
    load: Callable[[str], Tokenizer],
    source: ImageSource,
    inception: InceptionFeatures,
    out: str | Path,
    *,
    num_images: int | None = None,
    batch_size: int = 32,
    allow_partial: bool = False,
    processes: Processes | None = None,
    speed: bool = True,
    speed_seconds: float = 60.0,
    announce: Callable[[str], None] = lambda _m: None,
    lpips: torch.nn.Module | None = None,
    metrics: Sequence[str | Metric] = (),
) -> dict[str, Any] | None:
    """Score every tokenizer in ``entries`` (loaded with ``load``) on ``source`` at each budget it supports; write
    ``OUT/<label>.json`` per tokenizer and the table and plot; the table on the main process (None elsewhere).
    ``lpips``: an LPIPS network to score LPIPS too; ``metrics``: optional metrics by name (``"kid"``) or instance."""
    options = EvalOptions(batch_size=batch_size, allow_partial=allow_partial)
    ctx = EvalContext(processes, None, inception, options, data=source)
    chosen = reconstruction_metrics(lpips, metrics)
    return compare_over(
        ctx,
        entries,
        Path(out),
        num_images=num_images,
        speed=speed,
        speed_seconds=speed_seconds,
        metrics=chosen,
        announce=announce,
        load=load,
    )
