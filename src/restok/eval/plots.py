"""Visualisations, as PNG files: reconstruction strips by token count (PIL only), and with matplotlib (``pip install
'restok[viz]'``) the encoder's attention from each latent level to each image-token scale (Fig. 5's heat maps),
codebook-usage histograms, training curves from a run folder, the rate curve of a reconstruction evaluation and the
table of a guidance search."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core import hierarchy as Hy
from ..data.images import make_grid, save_image
from ..runtime.files import atomic_write
from ..runtime.inputs import MAX_INPUT_BYTES, read_text_input
from .metrics import codebook_stats

if TYPE_CHECKING:
    from ..models.restok import ResTok
    from ..models.tokenizer import Tokenizer

__all__ = [
    "pyplot",
    "save_figure",
    "reconstruction_strip",
    "latent_to_image_attention",
    "plot_attention",
    "plot_codebook_usage",
    "plot_training_curves",
    "plot_rate_curve",
    "plot_search",
    "plot_comparison",
]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or an ImportError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("this plot needs matplotlib: pip install 'restok[viz]'") from None
    return plt


def _panels(n: int, max_cols: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    """A figure with ``n`` used panels in a grid of up to ``max_cols`` columns (the rest hidden)."""
    plt = pyplot()
    cols = min(max_cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def save_figure(fig: Any, path: str | Path) -> None:
    """Write a figure atomically (the format from the suffix) and close it."""
    fig.tight_layout()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format=fmt))
    pyplot().close(fig)


@torch.no_grad()
def reconstruction_strip(tok: Tokenizer, images: torch.Tensor, path: str | Path) -> list[int]:
    """Originals (top row) over reconstructions from each allowed prefix length; returns the lengths."""
    ids = tok.encode(images)
    rows = [images.cpu()] + [tok.decode(ids[:, :k]).cpu() for k in tok.prefix_lengths]
    save_image(make_grid(torch.cat(rows), nrow=images.shape[0]), path)
    return list(tok.prefix_lengths)


@torch.no_grad()
def latent_to_image_attention(tok: ResTok, images: torch.Tensor) -> list[dict[str, Any]]:
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
        grids = tok.encoder.stage_grids(stage)
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


def plot_attention(tok: ResTok, images: torch.Tensor, path: str | Path) -> None:
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
    save_figure(fig, path)


def plot_codebook_usage(indices: torch.Tensor, codebook_size: int, path: str | Path) -> dict[str, float]:
    """Histogram of code frequencies (sorted), with usage and entropy (Eq. 5-6) in the title."""
    plt = pyplot()
    counts = torch.bincount(indices.reshape(-1).long().cpu(), minlength=codebook_size).sort(descending=True).values
    stats = codebook_stats(indices, codebook_size)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(range(codebook_size), counts.numpy(), width=1.0)
    ax.set_xlabel("code (sorted by frequency)")
    ax.set_ylabel("count")
    ax.set_title(
        f"usage {stats['usage']:.1%}, entropy {stats['entropy']:.2f} bits (max "
        f"{torch.tensor(float(codebook_size)).log2():.2f})"
    )
    save_figure(fig, path)
    return stats


def plot_training_curves(run: str | Path, path: str | Path, keys: Sequence[str] | None = None) -> list[str]:
    """Curves of ``RUN/metrics.jsonl`` (default: every logged loss term); returns the keys plotted."""
    records = [
        json.loads(line)
        for line in read_text_input(Path(run) / "metrics.jsonl", "training log", MAX_INPUT_BYTES).splitlines()
        if line.strip()
    ]
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
    save_figure(fig, path)
    return keys


def plot_rate_curve(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """PSNR, SSIM, rFID and codebook usage against the number of tokens (skipped without matplotlib)."""
    try:
        plt = pyplot()
    except ImportError:
        return
    keys = [k for k in ("psnr", "ssim", "rfid", "codebook_usage") if all(r.get(k) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot([r["tokens"] for r in rows], [r[key] for r in rows], marker="o")
        ax.set(xscale="log", xlabel="tokens kept", title=key)
        ax.set_xticks([r["tokens"] for r in rows], [str(r["tokens"]) for r in rows])
    save_figure(fig, path)


def plot_search(path: str | Path, rows: list[dict[str, Any]]) -> Path | None:
    """gFID and IS of a guidance search against the guidance scale, one line per schedule (and step start); None
    without matplotlib."""
    try:
        plt = pyplot()
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        key = (
            r["cfg_schedule"]
            + (f" from {r['cfg_start']:g}" if r["cfg_schedule"] == "step" else "")
            + f" (stage {r['stage']})"
        )
        groups.setdefault(key, []).append(r)
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["cfg_scale"])
        xs = [r["cfg_scale"] for r in rs]
        axes[0].plot(xs, [r["gfid"] for r in rs], marker="o", label=key)
        if all(r.get("inception_score") is not None for r in rs):
            axes[1].plot(xs, [r["inception_score"] for r in rs], marker="o", label=key)
    has_is = any(r.get("inception_score") for r in rows)
    axes[0].set(xlabel="guidance scale", ylabel="gFID (lower is better)", title="gFID")
    axes[1].set(
        xlabel="guidance scale",
        ylabel="Inception Score",
        title="IS" + ("" if has_is else " (needs an Inception with logits)"),
    )
    axes[0].legend(fontsize=7)
    save_figure(fig, path)
    return Path(path)


def plot_comparison(path: str | Path, rows: list[dict[str, Any]]) -> Path | None:
    """rFID, PSNR, SSIM (and LPIPS when measured) against tokens per image, one line per tokenizer (a tokenizer of one
    budget is one point); None without matplotlib."""
    try:
        plt = pyplot()
    except ImportError:
        return None
    keys = [k for k in ("rfid", "psnr", "ssim", "lpips") if any(r.get(k) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    names = list(dict.fromkeys(r["tokenizer"] for r in rows))
    for ax, key in zip(axes[0], keys):
        for name in names:
            rs = sorted(
                (r for r in rows if r["tokenizer"] == name and r.get(key) is not None), key=lambda r: r["tokens"]
            )
            ax.plot([r["tokens"] for r in rs], [r[key] for r in rs], marker="o", label=name)
        ax.set(xscale="log", xlabel="tokens per image", title=key)
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)
    return Path(path)
