"""Image transforms of training and code extraction (the official recipe's): ADM's ``center_crop_arr`` and
``random_crop_arr`` (random resized crop, crop fraction 0.8-1.0), torchvision's ten-crop, and decoding bytes.
Evaluation uses :func:`restok.data.images.eval_transform`, the one evaluation transform of the package."""

from __future__ import annotations

import io
import math

import torch
from PIL import Image

from .images import center_crop_box, check_image_size, check_resize, to_rgb

__all__ = ["adm_center_crop", "adm_random_crop", "ten_crop", "decode_image"]


def _box_halve(img: Image.Image, target_short: int) -> Image.Image:
    """ADM: halve with a box filter while the short side stays >= twice the target (fast, alias-free)."""
    while min(img.size) >= 2 * target_short:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    return img


def _resize_short(img: Image.Image, short: int) -> Image.Image:
    check_resize(*img.size, short)
    scale = short / min(img.size)
    return img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)


def adm_center_crop(img: Image.Image, size: int) -> Image.Image:
    """ADM ``center_crop_arr``: box-halve, bicubic resize so the short side is ``size``, centre crop."""
    img = _resize_short(_box_halve(img, size), size)
    w, h = img.size
    top, left = (h - size) // 2, (w - size) // 2
    return img.crop((left, top, left + size, top + size))


def adm_random_crop(
    img: Image.Image, size: int, gen: torch.Generator, min_frac: float = 0.8, max_frac: float = 1.0
) -> Image.Image:
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
