"""Visualisations for any model, as PNG files: reconstruction strips by token count (PIL only), and with
matplotlib (``pip install 'restok[viz]'``) the encoder's attention from each latent level to each image-token
scale (Fig. 5's heat maps), codebook-usage histograms and training curves from a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from . import hierarchy as Hy
from .images import make_grid, save_image

__all__ = ["reconstruction_strip", "latent_to_image_attention", "plot_attention", "plot_codebook_usage", "plot_training_curves"]


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("this plot needs matplotlib: pip install 'restok[viz]'") from None
    return plt


def _panels(n: int, max_cols: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    """A figure with ``n`` used panels in a grid of up to ``max_cols`` columns (the rest hidden)."""
    plt = _plt()
    cols = min(max_cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def _save(fig: Any, path: str | Path) -> None:
    from .io import atomic_write

    fig.tight_layout()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format=fmt))
    _plt().close(fig)


@torch.no_grad()
def reconstruction_strip(tok: Any, images: torch.Tensor, path: str | Path) -> list[int]:
    """Originals (top row) over reconstructions from each allowed prefix length; returns the lengths."""
    ids = tok.encode(images)
    rows = [images.cpu()] + [tok.decode(ids[:, :k]).cpu() for k in tok.prefix_lengths]
    save_image(make_grid(torch.cat(rows), nrow=images.shape[0]), path)
    return list(tok.prefix_lengths)


@torch.no_grad()
def latent_to_image_attention(tok: Any, images: torch.Tensor) -> list[dict[str, Any]]:
    """Per encoder layer: attention mass from each latent level to each image-token scale (rows sum to the
    share of attention that goes to image tokens), averaged over the batch and the level's tokens.

    Returns dicts ``{"layer", "scales" (grids coarse to fine), "matrix" (levels x scales)}``.
    """
    enc, _ = tok.encode_latents(images, return_attention=True)
    L = tok.num_tokens
    bounds = Hy.latent_level_bounds(L)
    out = []
    stage = 0
    merge_at = tok.encoder.merge_at
    for layer, w in enumerate(enc.attention):  # (B, N, N); merges happen after the layer at merge_at
        grids = tok.encoder._stage_grids(stage)
        sizes = [h * ww for h, ww in grids]
        n_img = sum(sizes)
        lat = w[:, n_img:, :]  # (B, L, N) rows of the latent tokens
        mat = torch.zeros(len(bounds), len(sizes))
        for i, (a, b) in enumerate(bounds):
            col = 0
            for j, n in enumerate(sizes):
                mat[i, j] = lat[:, a:b, col : col + n].sum(-1).mean()
                col += n
        out.append({"layer": layer, "scales": list(grids), "matrix": mat})
        if layer in merge_at:
            stage += 1
    return out


def plot_attention(tok: Any, images: torch.Tensor, path: str | Path) -> None:
    """One heat map per encoder layer: latent level (rows, coarse to fine) x image-token scale (columns)."""
    maps = latent_to_image_attention(tok, images)
    fig, axes = _panels(len(maps), 4, (3, 2.6))
    for ax, m in zip(axes, maps):
        ax.imshow(m["matrix"].numpy(), cmap="viridis", aspect="auto", vmin=0)
        ax.set_title(f"layer {m['layer']}", fontsize=9)
        ax.set_xticks(range(len(m["scales"])), [f"{h}x{w}" for h, w in m["scales"]], fontsize=7)
        ax.set_yticks(range(m["matrix"].shape[0]), [str(n) for n in Hy.latent_level_sizes(tok.num_tokens)], fontsize=7)
        ax.set_xlabel("image-token scale", fontsize=7)
        ax.set_ylabel("latent level (size)", fontsize=7)
    _save(fig, path)


def plot_codebook_usage(indices: torch.Tensor, codebook_size: int, path: str | Path) -> dict[str, float]:
    """Histogram of code frequencies (sorted), with usage and entropy (Eq. 5-6) in the title."""
    from .metrics import codebook_stats

    plt = _plt()
    counts = torch.bincount(indices.reshape(-1).long().cpu(), minlength=codebook_size).sort(descending=True).values
    stats = codebook_stats(indices, codebook_size)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(range(codebook_size), counts.numpy(), width=1.0)
    ax.set_xlabel("code (sorted by frequency)")
    ax.set_ylabel("count")
    ax.set_title(f"usage {stats['usage']:.1%}, entropy {stats['entropy']:.2f} bits (max {torch.tensor(float(codebook_size)).log2():.2f})")
    _save(fig, path)
    return stats


def plot_training_curves(run: str | Path, path: str | Path, keys: Sequence[str] | None = None) -> list[str]:
    """Curves of ``RUN/metrics.jsonl`` (default: every logged loss term); returns the keys plotted."""
    records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{run}/metrics.jsonl has no records")
    skip = {"step", "lr", "d_lr", "steps_per_sec", "skipped_files"}
    keys = list(keys) if keys else [k for k in records[-1] if k not in skip]
    fig, axes = _panels(len(keys), 3, (4, 2.6))
    for ax, k in zip(axes, keys):
        pts = [(r["step"], r[k]) for r in records if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts])
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=7)
    _save(fig, path)
    return keys
