"""``restok plot strip|attention|codebook|curves``: the figures of :mod:`restok.pipelines.figures` as PNG files."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..pipelines.figures import CurvesRequest, FigureRequest, draw_curves, draw_figure
from .base import Command, request
from .options import model_options, output_option

__all__ = ["COMMANDS"]


def _image_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", help="image files (default: 10 held-out embedded digits)")
    model_options(p, tokenizer="restok-tiny-mnist")
    output_option(p, "output PNG")


def _figure(name: str) -> Callable[[argparse.Namespace], int]:
    """The command that draws figure ``name``."""

    def run(args: argparse.Namespace) -> int:
        found = draw_figure(request(FigureRequest, args, figure=name))
        if name == "codebook":
            print(f"usage {found['usage']:.3f}, entropy {found['entropy']:.3f} bits")
        print(f"wrote {args.out}")
        return 0

    run.__doc__ = f"Draw the {name} figure."
    return run


def _curves_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder with metrics.jsonl")
    p.add_argument("--keys", nargs="*", default=None, help="metrics to plot (default: all logged terms)")
    output_option(p, "output PNG")


def run_curves(args: argparse.Namespace) -> int:
    """Training curves of a run folder."""
    keys = draw_curves(request(CurvesRequest, args))
    print(f"wrote {args.out} ({', '.join(keys)})")
    return 0


run_strip, run_attention, run_codebook = _figure("strip"), _figure("attention"), _figure("codebook")

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
