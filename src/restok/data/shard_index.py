"""The index of a set of tar shards: where every sample's image lies (shard, offset, size), its label and its member
name, in flat arrays -- about 40 bytes a sample instead of a Python object each -- read from a cache beside the shards
when the shards are the ones it was built from.

Scanning reads each member's 512-byte header and skips its payload (``.cls`` payloads are read: they are the labels),
which is several times faster than ``tarfile``'s member objects; ustar prefixes, GNU long names and pax ``path``
records are understood. The cache (``.restok-index.npz`` in the shards' folder, written atomically) records every
shard's name, size and modification time; any difference rebuilds it, and a folder that cannot be written is indexed
without a cache. Records are made when asked for (:class:`ShardRecords`), so a 1.28M-sample set costs tens of MB per
process and a second start reads the cache in well under a second (``benchmarks/loader_scale.py``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..runtime.inputs import read_npz
from .records import DataError, ImageRecord

__all__ = ["ShardIndex", "ShardRecords", "scan_shard", "load_shard_index", "CACHE_NAME"]

CACHE_NAME = ".restok-index.npz"
CACHE_VERSION = 1
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")


def _octal(field: bytes) -> int:
    """A tar header's number (octal text, or GNU base-256); ValueError when it is neither."""
    text = field.rstrip(b"\0 ").strip()
    if text and text[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    return int(text or b"0", 8)


def _pax_path(data: bytes) -> str | None:
    """The ``path`` record of a pax extended header."""
    for line in data.split(b"\n"):
        _, _, rec = line.partition(b" ")
        key, _, value = rec.partition(b"=")
        if key == b"path":
            return value.decode("utf-8", errors="replace")
    return None


def _header_name(hdr: bytes) -> str:
    """A ustar header's member name (its ``prefix/`` before the name when set)."""
    name = hdr[0:100].rstrip(b"\0").decode("utf-8", errors="replace")
    prefix = hdr[345:500].rstrip(b"\0") if hdr[257:262] == b"ustar" else b""
    return prefix.decode("utf-8", errors="replace") + "/" + name if prefix else name


def _members(path: str) -> Iterator[tuple[str, int, int, bytes | None]]:
    """``(name, data offset, size, payload of .cls members)`` of every regular file in a tar, in order."""
    with open(path, "rb") as f:
        pos, long_name = 0, None
        while True:
            f.seek(pos)
            hdr = f.read(512)
            if len(hdr) < 512 or hdr == b"\0" * 512:
                return
            try:
                if sum(hdr) - sum(hdr[148:156]) + 8 * 32 != _octal(hdr[148:156]):
                    raise ValueError("checksum")
                size, kind = _octal(hdr[124:136]), hdr[156:157]
            except ValueError:
                raise DataError(
                    f"shard {path} is not a readable tar file (damaged or not a tar at byte {pos})"
                ) from None
            data_at = pos + 512
            pos = data_at + (size + 511) // 512 * 512
            if kind in (b"L", b"x"):  # the next member's name: GNU long name, or a pax header
                f.seek(data_at)
                raw = f.read(size)
                long_name = raw.rstrip(b"\0").decode("utf-8", errors="replace") if kind == b"L" else _pax_path(raw)
                continue
            name = long_name or _header_name(hdr)
            long_name = None
            if kind not in (b"0", b"\0", b"7"):
                continue
            payload = None
            if name.endswith(".cls"):
                f.seek(data_at)
                payload = f.read(size)
            yield name, data_at, size, payload


def _class_label(data: bytes, where: str) -> int:
    """The class id of a ``.cls`` member (a non-negative decimal integer), or a DataError naming the member: a label
    that is not one would otherwise train a generator on a wrong or missing class."""
    text = data.decode("utf-8", errors="replace").strip()
    if not text.isdigit() or not text.isascii():
        raise DataError(f"{where}: the class label {text[:40]!r} is not a non-negative integer")
    return int(text)


def scan_shard(path: str) -> tuple[list[str], list[int], list[int], list[int]]:
    """Member names, offsets, sizes and labels (-1: none) of the samples of one shard (an image + optional ``.cls``
    per key, the key being the member name up to its first dot), in member order."""
    groups: dict[str, dict[str, tuple[str, int, int, bytes | None]]] = {}
    for name, off, size, payload in _members(path):
        base = os.path.basename(name)
        key, _, ext = base.partition(".")
        groups.setdefault(os.path.join(os.path.dirname(name), key), {})[ext.lower()] = (name, off, size, payload)
    names, offs, sizes, labels = [], [], [], []
    for members in groups.values():
        img = next((members[e] for e in IMAGE_EXTS if e in members), None)
        if img is None:
            continue
        cls = members.get("cls")
        labels.append(_class_label(cls[3] or b"", f"{path}:{cls[0]}") if cls else -1)
        names.append(img[0])
        offs.append(img[1])
        sizes.append(img[2])
    return names, offs, sizes, labels


def _read_member(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


class ShardIndex:
    """Flat arrays of a shard set: ``shard`` (which path), ``offset``, ``size``, ``label``, ``name``."""

    def __init__(
        self,
        paths: list[str],
        shard: np.ndarray,
        offset: np.ndarray,
        size: np.ndarray,
        label: np.ndarray,
        name: np.ndarray,
    ) -> None:
        self.paths, self.shard, self.offset, self.size, self.label, self.name = paths, shard, offset, size, label, name

    def __len__(self) -> int:
        return len(self.offset)


class ShardRecords(Sequence[ImageRecord]):
    """The records of a :class:`ShardIndex`, made when asked for (picklable: workers get the arrays, not objects)."""

    def __init__(self, index: ShardIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> np.ndarray:
        """Every member's label (-1: no ``.cls``), without building records."""
        return self.index.label

    def __getitem__(self, i: int) -> ImageRecord:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]  # type: ignore[return-value]
        x = self.index
        path = x.paths[int(x.shard[i])]
        return ImageRecord(
            f"{path}:{x.name[i].decode()}",
            int(x.label[i]),
            functools.partial(_read_member, path, int(x.offset[i]), int(x.size[i])),
        )


def _stamp(paths: list[str]) -> np.ndarray:
    """What identifies the shards: name, size and modification time of each."""
    return np.array([f"{Path(p).resolve()}|{os.stat(p).st_size}|{os.stat(p).st_mtime_ns}" for p in paths])


def _cached(cache: Path, paths: list[str]) -> ShardIndex | None:
    try:
        z = read_npz(cache, "shard index cache", follow_links=False)
        if int(z["version"]) != CACHE_VERSION or not np.array_equal(z["stamp"], _stamp(paths)):
            return None
        return ShardIndex(paths, z["shard"], z["offset"], z["size"], z["label"], z["name"])
    except Exception:  # noqa: BLE001 - a damaged or foreign cache file: index the shards again
        return None


def load_shard_index(paths: list[str], cache: bool = True) -> ShardIndex:
    """The index of ``paths`` (from the cache beside them when it matches the shards; else scanned, and cached when
    every shard is in one writable folder)."""
    folder = {str(Path(p).resolve().parent) for p in paths}
    cache_file = Path(next(iter(folder))) / CACHE_NAME if cache and len(folder) == 1 else None
    if cache_file is not None and cache_file.is_file():
        found = _cached(cache_file, paths)
        if found is not None:
            return found
    cols: list[list] = [[], [], [], [], []]
    for k, p in enumerate(paths):
        names, offs, sizes, labels = scan_shard(p)
        for col, vals in zip(cols, ([k] * len(names), offs, sizes, labels, names)):
            col.extend(vals)
    index = ShardIndex(
        paths,
        np.asarray(cols[0], np.int32),
        np.asarray(cols[1], np.int64),
        np.asarray(cols[2], np.int64),
        np.asarray(cols[3], np.int32),
        np.asarray([n.encode() for n in cols[4]], dtype=bytes),
    )
    if cache_file is not None and os.access(cache_file.parent, os.W_OK):
        _write_cache(cache_file, paths, index)
    return index


def _write_cache(path: Path, paths: list[str], x: ShardIndex) -> None:
    from ..runtime.files import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                version=np.array(CACHE_VERSION),
                stamp=_stamp(paths),
                shard=x.shard,
                offset=x.offset,
                size=x.size,
                label=x.label,
                name=x.name,
            )

    try:
        atomic_write(path, write)
    except OSError:
        pass  # a read-only or full disk: the index works without its cache
