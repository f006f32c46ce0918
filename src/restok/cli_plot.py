"""``restok plot strip|attention|codebook|curves``: the visualisations of :mod:`restok.viz` as PNG files."""

from __future__ import annotations

import argparse
from typing import Any

import torch

__all__ = ["add_plot_commands"]


def _images(args: argparse.Namespace, size: int) -> torch.Tensor:
    """The given image files, or held-out embedded digits when none are given."""
    if args.images:
        from .images import load_image

        return torch.stack([load_image(p, size) for p in args.images])
    from .datasets import MNISTDigits

    return MNISTDigits("test", size).batch(range(0, 1000, 100))[0]


def cmd_plot(args: argparse.Namespace) -> int:
    """Write one plot and say where."""
    from . import viz

    if args.what == "curves":
        keys = viz.plot_training_curves(args.run, args.out, args.keys)
        print(f"wrote {args.out} ({', '.join(keys)})")
        return 0
    from .tokenizer import ResTok

    tok = ResTok.from_pretrained(args.tokenizer).eval()
    x = _images(args, tok.config.image_size)
    with torch.no_grad():
        if args.what == "strip":
            viz.reconstruction_strip(tok, x, args.out)
        elif args.what == "attention":
            viz.plot_attention(tok, x, args.out)
        else:
            stats = viz.plot_codebook_usage(tok.encode(x), tok.codebook_size, args.out)
            print(f"usage {stats['usage']:.3f}, entropy {stats['entropy']:.3f} bits")
    print(f"wrote {args.out}")
    return 0


def add_plot_commands(sub: Any) -> None:
    """Register ``restok plot ...``."""
    p = sub.add_parser("plot", help="PNG visualisations: reconstruction strip, attention maps, codebook usage, training curves")
    psub = p.add_subparsers(dest="what", required=True)
    for what, helptext in (
        ("strip", "originals over reconstructions from every prefix length"),
        ("attention", "encoder attention from each latent level to each image-token scale, per layer (needs matplotlib)"),
        ("codebook", "code-frequency histogram with usage and entropy (needs matplotlib)"),
    ):
        s = psub.add_parser(what, help=helptext)
        s.add_argument("images", nargs="*", help="image files (default: 10 held-out embedded digits)")
        s.add_argument("--tokenizer", default="restok-tiny-mnist")
        s.add_argument("--out", required=True, help="output PNG")
        s.set_defaults(func=cmd_plot)
    s = psub.add_parser("curves", help="training curves of a run folder (needs matplotlib)")
    s.add_argument("run", help="run folder with metrics.jsonl")
    s.add_argument("--keys", nargs="*", default=None, help="metrics to plot (default: all logged terms)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_plot)
