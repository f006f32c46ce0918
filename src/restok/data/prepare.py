"""``restok data prepare`` and ``restok data check``: any supported source to webdataset-layout tar shards, and what
a folder of shards holds.

Shards (``shard-000000.tar``, ...) hold ``KEY.jpg``/``KEY.png`` + ``KEY.cls`` per sample, KEY the sample's position in
the source (``00000042``), in the source's order. A shard closes when the next sample would pass ``max_bytes`` or it
holds ``max_samples``; each is written to a temporary and renamed (a crash leaves whole shards only), and
``prepare.json`` lists the finished ones, so a rerun resumes after the last (a rerun under other settings is refused).
The folder is locked for the whole run and ``prepare.json`` records the settings before the first shard, so a second
preparation into the same folder -- running at the same time, or later from another source -- is refused, never
mixed in; shards in a folder without ``prepare.json`` are not overwritten.
``--resize S`` re-encodes every image with its short side S (bicubic, as the evaluation transform's resize; JPEG
quality 95 for JPEG sources, PNG otherwise) so that a 1.28M-image set does not carry full-size originals.
``classes.json`` beside the shards: class names, counts per class, the label mapping of a source whose labels did not
run 0..C-1, the shards with their counts and sizes, and the samples of a labelled source that carry no label (they
are written without ``.cls``, and named).
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..runtime.files import atomic_write, make_dir, write_json
from ..runtime.inputs import read_json_input
from ..runtime.locks import FolderLock
from ..runtime.progress import progress
from .records import DataError, ImageSource
from .transforms import decode_image

__all__ = [
    "PrepareSettings",
    "prepare_shards",
    "check_shards",
    "ShardReport",
    "PrepareRequest",
    "run_prepare",
    "CheckShardsRequest",
    "run_check_shards",
]

SHARD_NAME = "shard-{:06d}.tar"


@dataclass(frozen=True)
class PrepareSettings:
    """How shards are cut and what is stored."""

    max_bytes: int = 1 << 30  # per shard (webdataset's usual ~1 GB)
    max_samples: int = 10_000
    resize: int | None = None  # short side of re-encoded images (None: the original bytes)

    def to_dict(self) -> dict[str, Any]:
        """For ``prepare.json`` (a resume must find the same)."""
        return {"max_bytes": self.max_bytes, "max_samples": self.max_samples, "resize": self.resize}


def _encoded(data: bytes, resize: int | None) -> tuple[bytes, str]:
    """The bytes to store and their extension: the original (checked to decode), or re-encoded with short side
    ``resize``."""
    img = decode_image(data)  # raises on unreadable data: the sample is skipped and named
    fmt = (Image.open(io.BytesIO(data)).format or "").upper()
    if resize is None:
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}.get(fmt)
        if ext is not None:
            return data, ext
    if resize is not None and min(img.size) != resize:
        w, h = img.size
        s = resize / min(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=95)
        return buf.getvalue(), "jpg"
    img.save(buf, "PNG")
    return buf.getvalue(), "png"


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: the same source gives the same bytes
    tf.addfile(info, io.BytesIO(data))


@dataclass
class _State:
    """``prepare.json``: settings, finished shards, skipped samples."""

    settings: dict[str, Any]
    shards: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skipped_index: list[int] = field(default_factory=list)

    @property
    def next_index(self) -> int:
        return self.shards[-1]["end"] if self.shards else 0


def _open_state(out: Path, settings: dict[str, Any]) -> _State:
    """The state of ``out``: resumed from ``prepare.json``, or new -- recorded at once, before any shard -- in a folder
    that holds no shards."""
    f = out / "prepare.json"
    if not (f.exists() or f.is_symlink()):
        foreign = sorted(p.name for p in out.glob("*.tar"))
        if foreign:
            raise DataError(
                f"{out} holds shards ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}) that no "
                "preparation recorded (no prepare.json); use another --out"
            )
        state = _State(settings)
        _save_state(out, state)
        return state
    try:
        old = read_json_input(f, "preparation record", follow_links=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{e}; delete {out} to start over") from None
    if not isinstance(old, dict):
        raise DataError(f"{f} is not a preparation record; delete {out} to start over")
    if old.get("settings") != settings:
        diff = sorted(
            k for k in set(settings) | set(old.get("settings", {})) if settings.get(k) != old.get("settings", {}).get(k)
        )
        raise DataError(
            f"{out} holds shards prepared under other settings ({', '.join(diff)}); use another --out or the same "
            "settings"
        )
    return _State(settings, old.get("shards", []), old.get("skipped", []), old.get("skipped_index", []))


def _save_state(out: Path, state: _State) -> None:
    """``prepare.json``: the settings, the finished shards and the skipped samples."""
    record = {"settings": state.settings, "shards": state.shards, "skipped": state.skipped}
    write_json(out / "prepare.json", {**record, "skipped_index": state.skipped_index})


def _write_shard(path: Path, items: list[tuple[str, bytes, str, int]]) -> int:
    """One shard, atomically; returns its size."""

    def write(tmp: str) -> None:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
            for key, data, ext, label in items:
                _add(tf, f"{key}.{ext}", data)
                if label >= 0:
                    _add(tf, f"{key}.cls", str(label).encode())

    atomic_write(path, write)
    return path.stat().st_size


def prepare_shards(
    source: ImageSource,
    out: str | Path,
    settings: PrepareSettings = PrepareSettings(),
    announce: Callable[[str], None] = lambda _m: None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Write ``source`` as tar shards into ``out`` (resuming after the last finished shard); returns
    ``classes.json``."""
    out = make_dir(Path(out))
    with FolderLock(out, "restok data prepare"):  # one preparation per folder, from the start
        state = _open_state(out, {"source": source.description, "num_samples": len(source), **settings.to_dict()})
        unlabeled = source.unlabeled_note()
        if unlabeled is not None:
            announce(f"note: {unlabeled}; they are written without .cls (listed in classes.json)")
        return _prepare(source, out, settings, state, announce, show_progress)


def _prepare(
    source: ImageSource,
    out: Path,
    settings: PrepareSettings,
    state: _State,
    announce: Callable[[str], None],
    show_progress: bool,
) -> dict[str, Any]:
    """Write the shards not written yet, then ``classes.json``."""
    i, n, t0 = state.next_index, len(source), time.perf_counter()
    if i:
        announce(f"resuming after {len(state.shards)} finished shard(s), at sample {i} of {n}")
    bar = progress(None, "preparing", total=n, enabled=show_progress, unit="sample")
    bar.update(i)
    while i < n:
        start, items, size = i, [], 0
        while i < n and len(items) < settings.max_samples:
            rec = source.records[i]
            try:
                data, ext = _encoded(rec.read(), settings.resize)
            except Exception as e:  # noqa: BLE001 - unreadable samples are skipped and named
                state.skipped.append(f"{rec.name} ({type(e).__name__}: {e})")
                state.skipped_index.append(i)
                i += 1
                continue
            if items and size + len(data) + 1536 > settings.max_bytes:
                break
            items.append((f"{i:08d}", data, ext, rec.label))
            size += len(data) + 1536  # tar headers and padding, about
            i += 1
        if items:
            name = SHARD_NAME.format(len([x for x in state.shards if x["name"]]))
            nbytes = _write_shard(out / name, items)
            state.shards.append({"name": name, "start": start, "end": i, "samples": len(items), "bytes": nbytes})
        else:  # only unreadable samples left: progress without a shard
            name, nbytes = "(no shard: every sample unreadable)", 0
            state.shards.append({"name": None, "start": start, "end": i, "samples": 0, "bytes": 0})
        _save_state(out, state)
        bar.update(i - start)
        announce(f"{name}: {len(items)} samples, {nbytes / 1e6:.1f} MB ({i}/{n}, {time.perf_counter() - t0:.0f} s)")
    bar.close()
    return _write_classes(out, source, state)


def _write_classes(out: Path, source: ImageSource, state: _State) -> dict[str, Any]:
    counts = [0] * source.num_classes
    skipped = set(state.skipped_index)
    for s in state.shards:
        for idx in range(s["start"], s["end"]):
            label = source.records[idx].label
            if label >= 0 and idx not in skipped:
                counts[label] += 1
    info = {
        "class_names": source.class_names,
        "counts": counts,
        "label_map": getattr(source, "label_map", None),
        "num_samples": sum(s["samples"] for s in state.shards),
        "skipped": state.skipped,
        "shards": [{k: s[k] for k in ("name", "samples", "bytes")} for s in state.shards if s["name"]],
        "source": source.description,
    }
    missing = [i for i in source.unlabeled() if i not in skipped]
    if missing:  # a labelled source's samples without a label: written without .cls, named here
        info["unlabeled"] = {"count": len(missing), "samples": [source.records[i].name for i in missing[:100]]}
    write_json(out / "classes.json", info)
    return info


# ------------------------------------------------------------------------------------------- check
@dataclass
class ShardReport:
    """What ``data check`` found: facts, and findings (one line each)."""

    facts: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


def check_shards(
    folder: str | Path, processes: int = 1, workers: int = 1, decode: bool = False, show_progress: bool = False
) -> ShardReport:
    """Counts, classes, unreadable members, shard sizes, and the shard arithmetic for ``processes`` x ``workers``."""
    from .sources import open_image_source

    folder = Path(folder)
    shards = sorted(folder.glob("*.tar"))
    if not shards:
        raise DataError(f"{folder}: no .tar shards")
    rep = ShardReport()
    source = open_image_source(folder)
    sizes = [p.stat().st_size for p in shards]
    counts: dict[int, int] = {}
    bad = []
    for rec in progress(source.records, "checking", enabled=show_progress, unit="sample"):
        counts[rec.label] = counts.get(rec.label, 0) + 1
        try:
            data = rec.read()
            decode_image(data) if decode else Image.open(io.BytesIO(data)).verify()
        except Exception as e:  # noqa: BLE001 - named, one per line
            bad.append(f"{rec.name} ({type(e).__name__})")
    rep.facts = {
        "shards": len(shards),
        "samples": len(source),
        "classes": source.num_classes,
        "samples_per_class": {"min": min(counts.values()), "max": max(counts.values())} if counts else {},
        "shard_bytes": {"min": min(sizes), "max": max(sizes), "total": sum(sizes)},
        "unreadable": len(bad),
    }
    rep.findings += [f"unreadable: {b}" for b in bad[:20]] + (
        [f"... {len(bad) - 20} more unreadable"] if len(bad) > 20 else []
    )
    unlabeled = source.unlabeled_note()
    if unlabeled is not None:
        rep.facts["unlabeled"] = len(source.unlabeled())
        rep.findings.append(
            f"{unlabeled} (no .cls): a class-conditional run or a code set cannot use them; label them or leave them "
            "out"
        )
    _check_against_classes_json(folder, source, counts, rep)
    _check_arithmetic(len(shards), sizes, processes, workers, rep)
    return rep


def _check_against_classes_json(folder: Path, source: ImageSource, counts: dict[int, int], rep: ShardReport) -> None:
    f = folder / "classes.json"
    if not (f.exists() or f.is_symlink()):
        return
    try:
        info = read_json_input(f, "class list", follow_links=False)
    except (OSError, ValueError) as e:
        rep.findings.append(f"classes.json unreadable: {e}")
        return
    if info.get("num_samples") != len(source):
        rep.findings.append(
            f"classes.json says {info.get('num_samples')} samples, the shards hold {len(source)}: shards missing or "
            "changed"
        )
    for label, n in enumerate(info.get("counts", [])):
        if counts.get(label, 0) != n:
            rep.findings.append(f"class {label}: classes.json counts {n}, the shards hold {counts.get(label, 0)}")
            break


def _check_arithmetic(n_shards: int, sizes: list[int], processes: int, workers: int, rep: ShardReport) -> None:
    """restok's own loader indexes samples, so any shard count works for it; a webdataset pipeline hands whole shards
    to each of processes x workers, which needs at least one shard each and shards of similar size."""
    readers = processes * workers
    rep.facts["readers"] = readers
    if n_shards < readers:
        rep.findings.append(
            f"{n_shards} shards for {processes} processes x {workers} workers = {readers} readers: a webdataset "
            "pipeline leaves readers idle or hangs (restok's loader indexes samples and is not affected); "
            "prepare more, smaller shards (--max-samples)"
        )
    elif n_shards % readers and n_shards < 4 * readers:
        rep.findings.append(
            f"{n_shards} shards do not split evenly over {readers} readers: webdataset ranks get unequal "
            "batches per epoch (restok's loader is not affected)"
        )
    if len(sizes) > 2 and max(sizes[:-1]) > 2 * max(1, min(sizes[:-1])):
        rep.findings.append(
            f"shard sizes range {min(sizes[:-1]) / 1e6:.1f}-{max(sizes[:-1]) / 1e6:.1f} MB (the last aside)"
        )


@dataclass(frozen=True, kw_only=True)
class PrepareRequest:
    """``restok data prepare``: a source (folder, shards, Hugging Face dataset, ``embedded:NAME``) written as
    webdataset-layout tar shards of at most ``max_shard_mb`` MB and ``max_samples`` samples, optionally re-encoded
    with short side ``resize``."""

    source: str
    out: Path
    max_shard_mb: float = 1024.0
    max_samples: int = 10_000
    resize: int | None = None
    progress: bool = True


def run_prepare(req: PrepareRequest, announce: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Write (or resume) the shards; returns ``classes.json``; ``announce`` hears each shard as it is written."""
    from .sources import open_image_source

    settings = PrepareSettings(int(req.max_shard_mb * 1e6), req.max_samples, req.resize)
    return prepare_shards(open_image_source(req.source), req.out, settings, announce, req.progress)


@dataclass(frozen=True, kw_only=True)
class CheckShardsRequest:
    """``restok data check``: what a folder of shards holds, for a run of ``processes`` x ``workers`` loaders."""

    folder: Path
    processes: int = 1
    workers: int = 1
    decode: bool = False
    progress: bool = True


def run_check_shards(req: CheckShardsRequest) -> ShardReport:
    """The facts and findings of the folder."""
    return check_shards(req.folder, req.processes, req.workers, req.decode, req.progress)
