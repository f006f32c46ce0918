"""Hugging Face ``datasets`` as an image source: a ``save_to_disk`` folder, parquet files (one, several, or a folder of
them) or a Hub dataset id through the Hugging Face cache, behind the same :class:`~.records.ImageSource` as folders and
tar shards (``pip install 'restok[datasets]'``).

The spec is the path or ``hf:ID``, optionally followed by ``?split=...&image=...&label=...&config=...``
(``embedded:``-style, so every command that takes ``--data`` takes it). The image column is the one the dataset
declares as an ``Image`` feature (else one named image/img/jpg/png/webp); the label column its ``ClassLabel`` (else
one named label/labels/cls/class/target of integers); both can be named. Rows keep their order, so sample i is row i
on every process and after every resume, as for the other sources. Labels that do not run 0..C-1 (e.g. 3, 7, 100)
are mapped to 0..C-1 in increasing order; the mapping is kept on the source (``label_map``) and in its description,
which a training run records. Images are read as their stored bytes (no decode in the dataset library): an unreadable
one is skipped and named where it is read, as elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import json
import urllib.parse
from pathlib import Path
from typing import Any

from ..runtime.inputs import read_bytes_input
from .records import DataError, ImageRecord, ImageSource

__all__ = ["is_hf_spec", "hf_source", "parse_hf_spec"]

IMAGE_NAMES = ("image", "img", "jpg", "jpeg", "png", "webp")
LABEL_NAMES = ("label", "labels", "cls", "class", "target")
_OPEN: dict[tuple[str, str, str | None], Any] = {}  # per process: datasets opened once (memory-mapped arrow)


def parse_hf_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``(where, options)`` of ``PATH_OR_hf:ID[?split=..&image=..&label=..&config=..]``."""
    where, _, query = str(spec).partition("?")
    opts = dict(urllib.parse.parse_qsl(query, keep_blank_values=False))
    unknown = sorted(set(opts) - {"split", "image", "label", "config"})
    if unknown:
        raise DataError(f"{spec}: unknown dataset option(s) {unknown}; known: split, image, label, config")
    return where, opts


def is_hf_spec(spec: str) -> bool:
    """Whether ``spec`` names a Hugging Face dataset: ``hf:ID``, a ``save_to_disk`` folder, or parquet files."""
    where = str(spec).partition("?")[0]
    p = Path(where)
    if where.startswith("hf:") or where.endswith(".parquet"):
        return True
    return p.is_dir() and (
        (p / "dataset_info.json").is_file()
        or (p / "dataset_dict.json").is_file()
        or (p / "state.json").is_file()
        or any(p.glob("*.parquet"))
    )


def _load(where: str, split: str, config: str | None) -> Any:
    """The dataset (one split), opened once per process."""
    key = (where, split, config)
    if key in _OPEN:
        return _OPEN[key]
    try:
        import datasets
    except ImportError:
        raise DataError("Hugging Face datasets need the datasets package: pip install 'restok[datasets]'") from None
    p = Path(where)
    try:
        if where.startswith("hf:"):
            ds = datasets.load_dataset(where[3:], config, split=split)
        elif where.endswith(".parquet") or (
            p.is_dir() and any(p.glob("*.parquet")) and not (p / "dataset_info.json").exists()
        ):
            files = [where] if where.endswith(".parquet") else sorted(str(f) for f in p.glob("*.parquet"))
            ds = datasets.load_dataset("parquet", data_files=files, split="train")
        else:
            ds = datasets.load_from_disk(where)
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"{where} has splits {sorted(ds)}, not {split!r}: add ?split=NAME")
                ds = ds[split]
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - the datasets library raises many kinds for a bad path, id or split
        raise DataError(
            f"cannot open the dataset {where} (split {split!r}): {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ) from None
    _OPEN[key] = ds
    return ds


def _columns(ds: Any, opts: dict[str, str], where: str) -> tuple[str, str | None]:
    """The image column and the label column (None: unlabelled)."""
    import datasets

    feats = ds.features
    image = (
        opts.get("image")
        or next((c for c, f in feats.items() if isinstance(f, datasets.Image)), None)
        or next((c for c in IMAGE_NAMES if c in feats), None)
    )
    if image is None or image not in feats:
        raise DataError(f"{where}: no image column found among {list(feats)}; name it with ?image=COLUMN")
    label = (
        opts.get("label")
        or next((c for c, f in feats.items() if isinstance(f, datasets.ClassLabel)), None)
        or next(
            (
                c
                for c in LABEL_NAMES
                if c in feats and str(getattr(feats[c], "dtype", "")).startswith(("int", "uint", "float", "string"))
            ),
            None,
        )
    )
    if label is not None and label not in feats:
        raise DataError(f"{where}: no column {label!r} (columns: {list(feats)})")
    return image, label


_VIEWS: dict[tuple[str, str, str | None, str], Any] = {}  # per process: the image column alone, undecoded


def _image_view(where: str, split: str, config: str | None, image: str) -> Any:
    """The dataset's image column alone, as stored bytes (the library does not decode), opened once per process."""
    key = (where, split, config, image)
    if key not in _VIEWS:
        import datasets

        ds = _load(where, split, config).select_columns([image])
        _VIEWS[key] = (
            ds.cast_column(image, datasets.Image(decode=False))
            if isinstance(ds.features[image], datasets.Image)
            else ds
        )
    return _VIEWS[key]


def _read_path(path: str, index: int) -> bytes:
    """The bytes of the image file a row names by path: a regular file, bounded (never a device or a FIFO)."""
    try:
        return read_bytes_input(path, "image")
    except (OSError, ValueError) as e:
        raise DataError(f"row {index} names its image by path: {e}") from None


def _read_row(where: str, split: str, config: str | None, image: str, index: int) -> bytes:
    """The stored bytes of one image (a path is read when only a path is stored)."""
    value = _image_view(where, split, config, image)[int(index)][image]
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return _read_path(value["path"], index)
        raise DataError(f"row {index} has an empty image")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise DataError(f"row {index}: column {image!r} holds {type(value).__name__}, not image bytes")


def _labels(ds: Any, label: str | None) -> tuple[list[int], list[str], dict[str, int] | None]:
    """Labels as 0..C-1, the class names, and the mapping when the stored labels did not run 0..C-1."""
    import datasets

    if label is None:
        return [-1] * len(ds), [], None
    raw = list(ds[label])
    if any(v is None for v in raw):
        raise DataError(
            f"label column {label!r} has empty values (row {raw.index(None)}): label every row, or name no label column"
        )
    feat = ds.features[label]
    if isinstance(feat, datasets.ClassLabel):  # -1 is the datasets library's "no label": kept, and named by users
        values = [int(v) for v in raw]
        bad = next((i for i, v in enumerate(values) if not -1 <= v < len(feat.names)), None)
        if bad is not None:
            raise DataError(
                f"label column {label!r}, row {bad}: class {values[bad]} outside the {len(feat.names)} classes its "
                "ClassLabel names (-1 = no label)"
            )
        return values, list(feat.names), None
    if all(isinstance(v, str) for v in raw):  # class names: mapped to 0..C-1 in sorted order, as image folders' names
        names = sorted(set(raw))
        index = {n: i for i, n in enumerate(names)}
        return [index[v] for v in raw], names, index
    if not all(isinstance(v, (int, bool)) or (isinstance(v, float) and v.is_integer()) for v in raw) or any(
        int(v) < 0 for v in raw
    ):
        raise DataError(
            f"label column {label!r} holds {type(raw[0]).__name__} values such as {raw[0]!r}, not class ids "
            "(non-negative integers) or class names"
        )
    values = [int(v) for v in raw]
    seen = sorted(set(values))
    if seen == list(range(len(seen))):
        return values, [str(v) for v in seen], None
    mapping = {str(v): i for i, v in enumerate(seen)}
    return [mapping[str(v)] for v in values], [str(v) for v in seen], mapping


def hf_source(spec: str) -> ImageSource:
    """The :class:`ImageSource` of a Hugging Face dataset spec (see the module docstring)."""
    where, opts = parse_hf_spec(spec)
    split, config = opts.get("split", "train"), opts.get("config")
    ds = _load(where, split, config)
    image, label = _columns(ds, opts, where)
    labels, names, mapping = _labels(ds, label)
    read = functools.partial(_read_row, where, split, config)
    records = [
        ImageRecord(f"{where}[{split}][{i}]", lab, functools.partial(read, image, i)) for i, lab in enumerate(labels)
    ]
    if not records:
        raise DataError(f"{where} (split {split!r}) has no rows")
    desc = (
        f"Hugging Face dataset {where} split {split} (image column {image!r}, label column {label!r}, "
        f"{len(records)} images, {len(names)} classes"
    )
    if mapping:
        digest = hashlib.sha256(json.dumps(mapping, sort_keys=True).encode()).hexdigest()[:12]
        shown = ", ".join(f"{k}->{v}" for k, v in list(mapping.items())[:5]) + (", ..." if len(mapping) > 5 else "")
        desc += f"; labels mapped to 0..{len(names) - 1}: {shown} (sha256 {digest})"
    source = ImageSource(records, names, desc + ")")
    source.label_map = mapping  # type: ignore[attr-defined]
    return source
