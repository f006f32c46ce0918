"""Image files in and out: loading any common format the way the model was evaluated, PNG writing, grids."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["ImageLoadError", "load_image", "to_pil", "save_image", "make_grid", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ImageLoadError(ValueError):
    """An image file that cannot be read or converted."""


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) float32 in [0, 1]; 16-bit and float modes are scaled, alpha is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float32)
        a = a / (65535.0 if a.max() > 255 or img.mode.startswith("I;16") else 255.0)
        return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2)
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float32)
        a = a / 255.0 if a.max() > 1.0 else a
        return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Read an image file -> (3, size, size) float in [0, 1]: short side resized to ``size`` (bicubic,
    antialiased), then centre-cropped, as the tokenizer's evaluation transform (TiTok protocol)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            arr = _to_rgb_array(im)
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds
        raise ImageLoadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    h, w = arr.shape[:2]
    if min(h, w) < 1:
        raise ImageLoadError(f"{path}: empty image")
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8)).resize((nw, nh), Image.BICUBIC)
    top, left = (nh - size) // 2, (nw - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> RGB PIL image (rounded to 8 bits)."""
    arr = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Write a (3, H, W) [0, 1] tensor as PNG (or the format the suffix names)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path)


def make_grid(images: torch.Tensor | Sequence[torch.Tensor], nrow: int, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
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
