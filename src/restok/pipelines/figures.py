"""The figures of ``restok plot``: a tokenizer's coarse-to-fine strip, its encoder's attention from each latent level
to each image-token scale (Fig. 5's heat maps), its code-frequency histogram -- on given images or, by default, ten
held-out embedded digits -- and the training curves of a run folder. The drawing is :mod:`restok.eval.plots`'."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.embedded import MNISTDigits
from ..data.images import load_image
from ..eval.plots import plot_attention, plot_codebook_usage, plot_training_curves, reconstruction_strip
from ..models.resources import Resources
from ..runtime.requests import RequestError
from ..runtime.requests import field as field_name

__all__ = ["FIGURES", "FigureRequest", "draw_figure", "CurvesRequest", "draw_curves"]

FIGURES = ("strip", "attention", "codebook")


@dataclass(frozen=True, kw_only=True)
class FigureRequest:
    """A figure of a tokenizer on images (none given: ten held-out embedded digits)."""

    figure: str
    out: Path
    images: tuple[str, ...] = ()
    tokenizer: str = "restok-tiny-mnist"


def _images(paths: tuple[str, ...], size: int) -> torch.Tensor:
    """The given image files through the evaluation transform, or held-out embedded digits."""
    if paths:
        return torch.stack([load_image(p, size) for p in paths])
    return MNISTDigits("test", size).batch(range(0, 1000, 100))[0]


@torch.no_grad()
def draw_figure(req: FigureRequest) -> dict[str, Any]:
    """Draw the figure into ``req.out``; returns what it measured (the codebook's usage and entropy)."""
    if req.figure not in FIGURES:
        raise RequestError(f"{field_name('figure')} must be one of {list(FIGURES)}, got {req.figure!r}")
    tok = Resources("cpu", tokenizer=req.tokenizer).tokenizer.eval()
    x = _images(req.images, tok.config.image_size)
    if req.figure == "strip":
        return {"lengths": reconstruction_strip(tok, x, req.out)}
    if req.figure == "attention":
        plot_attention(tok, x, req.out)
        return {}
    return plot_codebook_usage(tok.encode(x), tok.codebook_size, req.out)


@dataclass(frozen=True, kw_only=True)
class CurvesRequest:
    """The training curves of a run folder (``metrics.jsonl``): the given keys, or every logged loss term."""

    run: Path
    out: Path
    keys: tuple[str, ...] | None = None


def draw_curves(req: CurvesRequest) -> list[str]:
    """Draw the curves into ``req.out``; returns the keys plotted."""
    return plot_training_curves(req.run, req.out, list(req.keys) if req.keys else None)
