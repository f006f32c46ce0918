"""Image files in and out, and the one evaluation transform every command and API uses.

The evaluation transform is the official (TiTok) one, torchvision's ``Resize(size, BICUBIC, antialias=True)``
then ``CenterCrop(size)`` on a PIL image, written here without torchvision so the core package does not need it,
and bit-identical to it: the short side becomes ``size``, the long side ``int(size * long / short)`` (truncated),
the crop starts at ``int(round((h - size) / 2))`` (Python's round, half to even). Colour modes are converted as
PIL's ``convert("RGB")`` does (what webdataset's ``"pil"`` decoder and torchvision's ``ImageFolder`` loader do):
grayscale is replicated, CMYK converted, palette expanded, an alpha channel dropped. 16-bit and float modes,
which ``convert("RGB")`` would clip to white, are scaled to 8 bits first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..runtime.files import atomic_write
from ..runtime.inputs import NotRegularFileError, regular_file

__all__ = [
    "ImageLoadError",
    "MAX_IMAGE_PIXELS",
    "check_image_size",
    "check_resize",
    "IMAGE_SUFFIXES",
    "to_rgb",
    "resized_size",
    "center_crop_box",
    "eval_transform",
    "pil_to_tensor",
    "load_image",
    "to_pil",
    "save_image",
    "make_grid",
    "sample_grid",
    "unique_stems",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Images with more pixels are refused before they are decoded: a small file (a 97 KB PNG of 10000 x 10000) must not
# take gigabytes. 64 megapixels is above any camera photo or dataset image; RESTOK_MAX_IMAGE_PIXELS changes it.
MAX_IMAGE_PIXELS = int(os.environ.get("RESTOK_MAX_IMAGE_PIXELS", 64_000_000))


class ImageLoadError(ValueError):
    """An image file that cannot be read or converted."""


def check_image_size(img: Image.Image, size: int | None = None) -> None:
    """Refuse an opened (not yet decoded) image larger than :data:`MAX_IMAGE_PIXELS`, or one that resizing its short
    side to ``size`` would make larger (a thin strip of few bytes must not become gigabytes)."""
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageLoadError(
            f"{w} x {h} pixels is more than the {MAX_IMAGE_PIXELS:,} allowed (RESTOK_MAX_IMAGE_PIXELS)"
        )
    if min(w, h) < 1:
        raise ImageLoadError("empty image")
    if size is not None:
        check_resize(w, h, size)


def check_resize(width: int, height: int, short: int) -> None:
    """Refuse resizing a ``width`` x ``height`` image's short side to ``short`` when the result would exceed
    :data:`MAX_IMAGE_PIXELS` (an extreme aspect ratio), before any memory is taken."""
    long = max(width, height) * short // max(min(width, height), 1)
    if long * short > MAX_IMAGE_PIXELS:
        raise ImageLoadError(
            f"{width} x {height} pixels would become {long:,} x {short} when its short side is resized to {short} "
            f"({long * short:,} pixels, more than the {MAX_IMAGE_PIXELS:,} allowed); its aspect ratio is too extreme"
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> an 8-bit RGB image, as ``img.convert("RGB")`` (16-bit/float modes scaled to 8 bits first)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            a = a * 255.0 if a.max(initial=0.0) <= 1.0 else a
        elif img.mode.startswith("I;16") or a.max(initial=0.0) > 255:
            a = a / 257.0  # 0..65535 -> 0..255
        img = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), mode="L")
    return img if img.mode == "RGB" else img.convert("RGB")


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(w, h)`` after torchvision's ``Resize(size)``: short side -> ``size``, long side truncated."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """PIL crop box ``(left, top, right, bottom)`` of torchvision's ``CenterCrop(size)`` (round half to even)."""
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def eval_transform(img: Image.Image, size: int) -> Image.Image:
    """The evaluation transform (TiTok protocol): RGB, bicubic resize of the short side to ``size``, centre crop."""
    img = to_rgb(img)
    if min(img.size) < 1:
        raise ImageLoadError("empty image")
    check_resize(*img.size, size)
    new = resized_size(*img.size, size)
    if new != img.size:  # torchvision returns the image untouched when the size already fits
        img = img.resize(new, Image.BICUBIC)
    return img.crop(center_crop_box(*img.size, size))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> (3, H, W) float32 in [0, 1], as torchvision's ``ToTensor`` (``to_rgb`` first)."""
    return torch.from_numpy(np.asarray(to_rgb(img), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Read an image file -> (3, size, size) float in [0, 1] through :func:`eval_transform`."""
    path = Path(path)
    try:
        with Image.open(regular_file(path, "image")) as im:
            check_image_size(im, size)
            im.load()
            return pil_to_tensor(eval_transform(im, size))
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except NotRegularFileError as e:
        raise ImageLoadError(str(e)) from None
    except ImageLoadError as e:
        raise ImageLoadError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds
        raise ImageLoadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> RGB PIL image (rounded to 8 bits)."""
    arr = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Write a (3, H, W) [0, 1] tensor as PNG (or the format the suffix names), atomically."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    pil = to_pil(image)
    atomic_write(path, lambda p: pil.save(p, format=fmt))


def sample_grid(images: torch.Tensor, per_class: int) -> torch.Tensor:
    """The grid of generated samples (``restok generate``'s ``grid.png``, the web app's): one row per class when
    there are several per class, else rows of up to 8."""
    return make_grid(images, nrow=per_class if per_class > 1 else min(8, len(images)))


def make_grid(
    images: torch.Tensor | Sequence[torch.Tensor], nrow: int, padding: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """Tile (N, 3, H, W) images into one (3, H', W') image with ``nrow`` images per row."""
    images = torch.stack(list(images)) if not isinstance(images, torch.Tensor) else images
    n, c, h, w = images.shape
    nrow = max(1, min(nrow, n))
    rows = -(-n // nrow)
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i].float().clamp(0, 1).cpu()
    return grid


def unique_stems(paths: Sequence[str | Path]) -> list[str]:
    """Output names for input files: their stems, with the parent folder (then a counter) added where two collide, so
    that ``a/x.png`` and ``b/x.png`` never overwrite each other."""
    plain = [Path(p).stem for p in paths]
    stems = [f"{Path(p).parent.name or 'root'}_{s}" if plain.count(s) > 1 else s for p, s in zip(paths, plain)]
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}_{seen[s]}")
    return out
