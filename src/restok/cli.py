"""The ``restok`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import torch

from . import __version__
from . import hierarchy as Hy
from .config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from .generator import HARGenerator
from .tokenizer import ResTok


def _count(model_cls: type, cfg: object) -> int:
    """Parameter count of a model built on the meta device (no memory or init cost)."""
    with torch.device("meta"):
        return sum(p.numel() for p in model_cls(cfg).parameters())


def cmd_info(args: argparse.Namespace) -> int:
    """Print the presets and run a seeded tokenize -> decode -> generate round trip on the tiny presets."""
    print(f"restok {__version__} (torch {torch.__version__})")
    print("\ntokenizer presets:")
    for name, cfg in TOKENIZER_PRESETS.items():
        print(f"  {name:14s} {cfg.image_size:4d}px  {cfg.num_tokens:4d} tokens  prefixes {list(cfg.prefix_lengths)}  "
              f"{_count(ResTok, cfg):>12,d} params")
    print("\ngenerator presets:")
    for name, g in GENERATOR_PRESETS.items():
        print(f"  {name:14s} {g.n_layer:3d} layers x {g.dim:5d}  {g.num_tokens:4d} tokens in {g.num_steps} calls  "
              f"{_count(HARGenerator, g):>12,d} params")
    torch.manual_seed(args.seed)
    tok = ResTok.from_preset("restok-tiny").eval()
    gen = HARGenerator.from_preset("har-tiny").eval()
    images = torch.rand(2, 3, tok.config.image_size, tok.config.image_size, generator=torch.Generator().manual_seed(args.seed))
    t0 = time.perf_counter()
    ids = tok.encode(images)
    recon = {k: tok.decode(ids[:, :k]) for k in tok.prefix_lengths}
    t1 = time.perf_counter()
    samples = gen.generate([0, 1], cfg_scale=2.0, cfg_schedule="step", cfg_start=0.25, top_p=0.95,
                           generator=torch.Generator().manual_seed(args.seed))
    t2 = time.perf_counter()
    print("\nround trip on untrained tiny presets (random weights; shapes and timings only):")
    print(f"  encode {list(images.shape)} -> ids {list(ids.shape)}; decode prefixes {list(recon)} in {t1 - t0:.2f}s")
    print(f"  HAR generate 2 samples: {Hy.har_num_steps(gen.num_tokens, gen.config.ar_tokens)} calls, "
          f"ids {list(samples.shape)} in {t2 - t1:.2f}s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    p = argparse.ArgumentParser(prog="restok", description="ResTok tokenizer and HAR generator (arXiv 2601.03955).")
    p.add_argument("--version", action="version", version=f"restok {__version__}")
    sub = p.add_subparsers(dest="command")
    info = sub.add_parser("info", help="show presets and run a quick round trip on the tiny presets")
    info.add_argument("--seed", type=int, default=0, help="seed of the tiny models and inputs")
    info.set_defaults(func=cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``restok`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["info", *(argv or [])])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
