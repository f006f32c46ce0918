"""``restok convert`` (an official checkpoint into this package's format), ``restok export`` (a training checkpoint as
an inference model) and ``restok info`` (every registered family's presets, and a seeded round trip)."""

from __future__ import annotations

import argparse

import torch

from ..models.auto import ConvertRequest
from ..models.auto import run_convert as convert_request
from ..pipelines.info import presets, round_trip
from ..runtime.version import __version__
from .base import Command, request
from .options import SEED, number

__all__ = ["COMMANDS"]


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="official directory, weights file (e.g. ema_model/pytorch_model.bin) or Hub id")
    p.add_argument("dst", help="output directory")
    p.add_argument("--kind", default="auto", choices=["auto", "tokenizer", "generator"])
    p.add_argument("--config", default=None, help="official config (JSON/YAML) when it is not beside the weights")


def run_convert(args: argparse.Namespace) -> int:
    """Convert an official checkpoint (Hub layout or raw training file) into this package's format."""
    kind, dropped = convert_request(request(ConvertRequest, args))
    print(f"converted {kind} {args.src} -> {args.dst}")
    if dropped:
        print("dropped training-only tensors: " + ", ".join(f"{g} ({n})" for g, n in dropped.items()))
    return 0


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder of 'restok train'")
    p.add_argument(
        "--step", type=number(int, ge=0, le=10**12), default=None, help="checkpoint step (default: the newest)"
    )
    p.add_argument("--out", default=None, help="output folder (default: RUN/export-step-<step>)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"], help="EMA weights (default) or the raw ones")


def run_export(args: argparse.Namespace) -> int:
    """Write a kept checkpoint's EMA (or raw) weights as an inference model."""
    from ..train.export import ExportRequest, run_export

    dest = run_export(request(ExportRequest, args))
    print(
        f"wrote {dest} ({args.weights} weights of {args.run}, step "
        f"{args.step if args.step is not None else 'newest'}); "
        "load it with from_pretrained"
    )
    return 0


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=SEED, default=0, help="seed of the tiny models and inputs")


def run_info(args: argparse.Namespace) -> int:
    """Print the presets and run a seeded tokenize -> decode -> generate round trip on the tiny presets."""
    print(f"restok {__version__} (torch {torch.__version__})")
    for kind in ("tokenizer", "generator"):
        print(f"\n{kind} presets:")
        for row in (r for r in presets() if r.kind == kind):
            print(f"  {row.name:18s} {row.summary}  {row.parameters:>12,d} params")
    rt = round_trip(args.seed)
    print("\nround trip on untrained tiny presets (random weights; shapes and timings only):")
    print(f"  encode {rt.image_shape} -> ids {rt.ids_shape}; decode prefixes {rt.prefixes} in {rt.coding_seconds:.2f}s")
    print(f"  HAR generate 2 samples: {rt.calls} calls, ids {rt.samples_shape} in {rt.sampling_seconds:.2f}s")
    return 0


COMMANDS = (
    Command("convert", "convert an official checkpoint into this package's format", _convert_arguments, run_convert),
    Command(
        "export",
        "write a kept training checkpoint as an inference model (e.g. the 750k-step EMA)",
        _export_arguments,
        run_export,
    ),
    Command("info", "show presets and run a quick round trip on the tiny presets", _info_arguments, run_info),
)
