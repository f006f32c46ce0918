"""``restok plot strip|attention|codebook|curves``: the visualisations of :mod:`restok.eval.plots` as PNG files."""

from __future__ import annotations

import argparse

import torch

from .base import Command
from .options import model_options, output_option

__all__ = ["COMMANDS"]


def _images(args: argparse.Namespace, size: int) -> torch.Tensor:
    """The given image files, or held-out embedded digits when none are given."""
    if args.images:
        from ..data.images import load_image

        return torch.stack([load_image(p, size) for p in args.images])
    from ..data.embedded import MNISTDigits

    return MNISTDigits("test", size).batch(range(0, 1000, 100))[0]


def _image_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", help="image files (default: 10 held-out embedded digits)")
    model_options(p, tokenizer="restok-tiny-mnist")
    output_option(p, "output PNG")


def _tokenizer_and_images(args: argparse.Namespace) -> tuple[object, torch.Tensor]:
    from ..models.auto import load_tokenizer

    tok = load_tokenizer(args.tokenizer).eval()
    return tok, _images(args, tok.config.image_size)


@torch.no_grad()
def run_strip(args: argparse.Namespace) -> int:
    """Originals over reconstructions from every prefix length."""
    from ..eval.plots import reconstruction_strip

    reconstruction_strip(*_tokenizer_and_images(args), args.out)
    print(f"wrote {args.out}")
    return 0


@torch.no_grad()
def run_attention(args: argparse.Namespace) -> int:
    """The encoder's attention from each latent level to each image-token scale, per layer."""
    from ..eval.plots import plot_attention

    plot_attention(*_tokenizer_and_images(args), args.out)
    print(f"wrote {args.out}")
    return 0


@torch.no_grad()
def run_codebook(args: argparse.Namespace) -> int:
    """Code-frequency histogram with usage and entropy."""
    from ..eval.plots import plot_codebook_usage

    tok, x = _tokenizer_and_images(args)
    stats = plot_codebook_usage(tok.encode(x), tok.codebook_size, args.out)
    print(f"usage {stats['usage']:.3f}, entropy {stats['entropy']:.3f} bits")
    print(f"wrote {args.out}")
    return 0


def _curves_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder with metrics.jsonl")
    p.add_argument("--keys", nargs="*", default=None, help="metrics to plot (default: all logged terms)")
    output_option(p, "output PNG")


def run_curves(args: argparse.Namespace) -> int:
    """Training curves of a run folder."""
    from ..eval.plots import plot_training_curves

    keys = plot_training_curves(args.run, args.out, args.keys)
    print(f"wrote {args.out} ({', '.join(keys)})")
    return 0


COMMANDS = (
    Command(
        "plot",
        "PNG visualisations: reconstruction strip, attention maps, codebook usage, training curves",
        subcommands=(
            Command(
                "strip", "originals over reconstructions from every prefix length", _image_plot_arguments, run_strip
            ),
            Command(
                "attention",
                "encoder attention from each latent level to each image-token scale, per layer (needs matplotlib)",
                _image_plot_arguments,
                run_attention,
            ),
            Command(
                "codebook",
                "code-frequency histogram with usage and entropy (needs matplotlib)",
                _image_plot_arguments,
                run_codebook,
            ),
            Command("curves", "training curves of a run folder (needs matplotlib)", _curves_arguments, run_curves),
        ),
    ),
)
