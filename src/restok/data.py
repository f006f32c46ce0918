"""Training and evaluation data: image folders and tar shards behind one interface, the official crops.

* :func:`open_image_source` reads a folder tree (one sub-folder per class, or a flat folder for unlabelled
  images) or webdataset-style tar shards (``KEY.jpg``/``KEY.png`` + ``KEY.cls``) -- shards are indexed once
  so that every sample has a fixed position, which is what makes resume and multi-process runs exact.
* Transforms: ADM's ``random_crop_arr`` (random resized crop, crop fraction 0.8-1.0) and
  ``center_crop_arr``, ten-crop with flips; evaluation uses :func:`restok.images.eval_transform` (the one
  evaluation transform of the package).
* :class:`StepBatchSampler`: the batch of every step is a pure function of (seed, step); a process takes
  its slice of the global batch, so 1 and N processes see the same samples.
* Unreadable files are skipped (the next sample takes their place), counted and named, never a crash.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import re
import tarfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from PIL import Image

from .datasets import embedded_source
from .images import IMAGE_SUFFIXES, center_crop_box, check_image_size, eval_transform, pil_to_tensor, to_rgb
from .sources import DataError, ImageRecord, ImageSource

__all__ = [
    "derive_seed",
    "ImageRecord",
    "ImageSource",
    "open_image_source",
    "adm_center_crop",
    "adm_random_crop",
    "ten_crop",
    "pil_to_tensor",
    "ImageDataset",
    "StepBatchSampler",
    "collate_images",
    "DataError",
]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from several integers/strings (stable across processes, platforms and Python runs)."""
    h = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


# ------------------------------------------------------------------------------------------- sources
def _read_file(path: str) -> bytes:
    return Path(path).read_bytes()


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


def _read_tar_member(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _shard_source(paths: list[str]) -> ImageSource:
    """Index tar shards: group members by key (name up to the first dot), image + optional ``.cls`` label."""
    records: list[ImageRecord] = []
    labels_seen: set[int] = set()
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"shard {path} does not exist")
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        try:
            with tarfile.open(path, "r:") as tf:
                for info in tf:
                    if not info.isfile():
                        continue
                    base = os.path.basename(info.name)
                    key, _, ext = base.partition(".")
                    groups.setdefault(os.path.join(os.path.dirname(info.name), key), {})[ext.lower()] = info
                cls_bytes = {k: tf.extractfile(m["cls"]).read() for k, m in groups.items() if "cls" in m}
        except tarfile.TarError as e:
            raise DataError(f"shard {path} is not a readable tar file: {e}") from None
        for key, members in groups.items():
            img = next((members[e] for e in ("jpg", "jpeg", "png", "webp", "bmp") if e in members), None)
            if img is None:
                continue
            label = -1
            if key in cls_bytes:
                try:
                    label = int(cls_bytes[key].decode().strip())
                except ValueError:
                    label = -1
            if label >= 0:
                labels_seen.add(label)
            records.append(ImageRecord(f"{path}:{img.name}", label, functools.partial(_read_tar_member, path, img.offset_data, img.size)))
    if not records:
        raise DataError(f"no images found in {len(paths)} shard(s) starting {paths[0]}")
    n_cls = max(labels_seen) + 1 if labels_seen else 0
    if n_cls > MAX_SPARSE_CLASSES and n_cls > 2 * len(labels_seen):
        raise DataError(
            f"the .cls labels of {len(paths)} shard(s) go up to {n_cls - 1} but only {len(labels_seen)} distinct classes "
            "appear; class ids must run 0..C-1 (a stray label?)"
        )
    names = [str(i) for i in range(n_cls)]
    return ImageSource(records, names, f"{len(paths)} tar shard(s) ({len(records)} images, {n_cls} classes)")


def open_image_source(path: str | Path) -> ImageSource:
    """A folder tree, a folder of ``.tar`` shards, one ``.tar``, a brace pattern of shards, or the embedded
    data by name (``embedded:mnist-train``, ``embedded:mnist-test``, ``embedded:mnist``)."""
    p = str(path)
    if p.startswith("embedded:"):
        return embedded_source(p[len("embedded:") :])
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


# ------------------------------------------------------------------------------------------- transforms
def _box_halve(img: Image.Image, target_short: int) -> Image.Image:
    """ADM: halve with a box filter while the short side stays >= twice the target (fast, alias-free)."""
    while min(img.size) >= 2 * target_short:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    return img


def _resize_short(img: Image.Image, short: int) -> Image.Image:
    scale = short / min(img.size)
    return img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)


def adm_center_crop(img: Image.Image, size: int) -> Image.Image:
    """ADM ``center_crop_arr``: box-halve, bicubic resize so the short side is ``size``, centre crop."""
    img = _resize_short(_box_halve(img, size), size)
    w, h = img.size
    top, left = (h - size) // 2, (w - size) // 2
    return img.crop((left, top, left + size, top + size))


def adm_random_crop(img: Image.Image, size: int, gen: torch.Generator, min_frac: float = 0.8, max_frac: float = 1.0) -> Image.Image:
    """ADM ``random_crop_arr``: short side drawn in [size/max_frac, size/min_frac], random ``size`` crop."""
    lo, hi = math.ceil(size / max_frac), math.ceil(size / min_frac)
    short = int(torch.randint(lo, hi + 1, (1,), generator=gen))
    img = _resize_short(_box_halve(img, short), short)
    w, h = img.size
    top = int(torch.randint(0, h - size + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - size + 1, (1,), generator=gen))
    return img.crop((left, top, left + size, top + size))


def ten_crop(img: Image.Image, size: int) -> list[Image.Image]:
    """torchvision ``TenCrop``: four corners and the centre, then the same of the mirrored image."""

    def five(im: Image.Image) -> list[Image.Image]:
        w, h = im.size
        corners = [(0, 0), (w - size, 0), (0, h - size), (w - size, h - size)]
        return [im.crop((x, y, x + size, y + size)) for x, y in corners] + [im.crop(center_crop_box(w, h, size))]

    return five(img) + five(img.transpose(Image.FLIP_LEFT_RIGHT))


def decode_image(data: bytes) -> Image.Image:
    """Bytes -> RGB PIL image (raises on corrupt data); modes converted by :func:`restok.images.to_rgb`."""
    with Image.open(io.BytesIO(data)) as im:
        check_image_size(im)
        im.load()
        return to_rgb(im)


# ------------------------------------------------------------------------------------------- dataset
class ImageDataset(torch.utils.data.Dataset):
    """Images of a source as (3, S, S) tensors. Training: ADM random resized crop + flip, drawn from the
    per-sample seed the sampler passes; evaluation: resize + centre crop.

    Items are dicts: ``image``, ``label``, ``index``, ``skipped`` (names of unreadable files replaced).
    """

    MAX_SKIPS = 64

    def __init__(self, source: ImageSource, image_size: int, train: bool, min_crop: float = 0.8, flip: bool = True) -> None:
        self.source, self.size, self.train, self.min_crop, self.flip = source, image_size, train, min_crop, flip

    def __len__(self) -> int:
        return len(self.source)

    def load(self, index: int, seed: int) -> torch.Tensor:
        """Read, decode and transform one record (raises on unreadable data)."""
        img = decode_image(self.source.records[index].read())
        if not self.train:
            return pil_to_tensor(eval_transform(img, self.size))
        gen = torch.Generator().manual_seed(seed)
        img = adm_random_crop(img, self.size, gen, self.min_crop, 1.0)
        if self.flip and float(torch.rand(1, generator=gen)) < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return pil_to_tensor(img)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = (key, key) if isinstance(key, int) else key
        skipped: list[str] = []
        n = len(self.source)
        for attempt in range(self.MAX_SKIPS):
            i = (index + attempt) % n
            try:
                image = self.load(i, seed)
            except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, with its reason
                skipped.append(f"{self.source.records[i].name} ({type(e).__name__}: {e})")
                continue
            return {"image": image, "label": self.source.records[i].label, "index": i, "skipped": skipped}
        raise DataError(f"{self.MAX_SKIPS} unreadable files in a row from index {index}: {skipped[:3]} ...")


def collate_images(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and labels; concatenate the skipped-file lists."""
    return {
        "image": torch.stack([it["image"] for it in items]),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "skipped": [s for it in items for s in it["skipped"]],
    }


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches as a pure function of (seed, step): epoch e is a seeded permutation of the data, step s takes
    global batch s mod (batches per epoch); this process gets rows [rank*b, (rank+1)*b) of it, each with a
    per-sample augmentation seed. Starting at ``start_step`` resumes the data stream exactly."""

    def __init__(self, num_samples: int, global_batch: int, rank: int, world: int, seed: int, start_step: int, end_step: int) -> None:
        if global_batch % world:
            raise DataError(f"global batch {global_batch} is not divisible by {world} processes")
        if num_samples < global_batch:
            raise DataError(f"the data has {num_samples} samples, fewer than one global batch of {global_batch}")
        self.n, self.gb, self.rank, self.world, self.seed = num_samples, global_batch, rank, world, seed
        self.start, self.end = start_step, end_step
        self.per_epoch = num_samples // global_batch  # drop_last
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def global_batch_for(self, step: int) -> list[tuple[int, int]]:
        """All (index, sample seed) pairs of the global batch of ``step``."""
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch)))
            self._perm_epoch = epoch
        idx = self._perm[b * self.gb : (b + 1) * self.gb].tolist()
        return [(i, derive_seed(self.seed, "sample", step, j)) for j, i in enumerate(idx)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per = self.gb // self.world
        for step in range(self.start, self.end):
            yield self.global_batch_for(step)[self.rank * per : (self.rank + 1) * per]
