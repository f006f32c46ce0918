"""``restok demo`` (the offline report on the embedded models) and ``restok app`` (the web demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.registry import family_titles
from .base import Command, request
from .options import (
    SEED,
    device_option,
    group,
    model_options,
    number,
    output_option,
    progress_option,
    sampling_type,
)

__all__ = ["COMMANDS"]


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    model_options(p, tokenizer="restok-tiny-mnist", generator="har-tiny-mnist")
    g = group(p, "what to show")
    g.add_argument(
        "--num-eval",
        type=number(int, ge=1, le=1000),
        default=1000,
        help="held-out digits for the PSNR table (default: all 1000)",
    )
    g.add_argument(
        "--per-class", type=number(int, ge=1, le=1000), default=8, help="generated digits per class (default: 8)"
    )
    g.add_argument(
        "--cfg-scale", type=sampling_type("cfg_scale"), default=2.0, help="guidance scale of the samples (default: 2.0)"
    )
    g.add_argument("--seed", type=SEED, default=0, help="seed (default: 0)")
    g.add_argument("--quick", action="store_true", help="100 held-out digits and 4 samples per class")
    output_option(p, "output folder", default="restok-demo")
    progress_option(p)


def run_demo(args: argparse.Namespace) -> int:
    """Run the offline demo on the embedded models and say where its outputs are."""
    from ..apps.demo import DemoRequest, make_demo

    f = make_demo(request(DemoRequest, args))
    psnr = ", ".join(f"{k} tokens {v:.1f} dB" for k, v in f["psnr_db_by_tokens"].items())
    print(f"held-out PSNR: {psnr}")
    print(
        f"wrote {Path(args.out) / 'report.html'} (and report.md, reconstructions.png, samples.png, progressive.png) "
        f"in {f['timings']['total_s']:.1f} s"
    )
    return 0


def _app_arguments(p: argparse.ArgumentParser) -> None:
    model_options(p, tokenizer="restok-tiny-mnist", generator="har-tiny-mnist")
    g = group(p, "server")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    g.add_argument("--port", type=number(int, ge=1, le=65535), default=7860, help="port (default: 7860)")
    g.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    group(p, "models").add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="TOKENIZER",
        help=f"a tokenizer of any family ({family_titles('tokenizer')}) to show side by side with --tokenizer on the "
        "same image; repeat for several",
    )
    device_option(p)


def run_app(args: argparse.Namespace) -> int:
    """Start the web demo and serve until interrupted (``--generator none``: the tokenizer tab alone)."""
    from ..apps.web import AppRequest, serve

    serve(request(AppRequest, args), announce=lambda line: print(line, flush=True))
    return 0


COMMANDS = (
    Command(
        "demo",
        "the embedded MNIST models: coarse-to-fine reconstructions, samples, report (offline)",
        _demo_arguments,
        run_demo,
    ),
    Command(
        "app",
        "local web demo (Gradio): tokenizer and generator tabs (pip install 'restok[app]')",
        _app_arguments,
        run_app,
    ),
)
