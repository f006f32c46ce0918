"""``restok convert`` (an official checkpoint into this package's format), ``restok export`` (a training checkpoint as
an inference model) and ``restok info`` (every registered family's presets, and a seeded round trip)."""

from __future__ import annotations

import argparse
import time

import torch

from ..core.registry import model_classes
from ..models.auto import convert_checkpoint
from ..runtime.version import __version__
from ..sampling import RELEASED_RECIPE
from .base import Command
from .options import SEED, number

__all__ = ["COMMANDS"]


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="official directory, weights file (e.g. ema_model/pytorch_model.bin) or Hub id")
    p.add_argument("dst", help="output directory")
    p.add_argument("--kind", default="auto", choices=["auto", "tokenizer", "generator"])
    p.add_argument("--config", default=None, help="official config (JSON/YAML) when it is not beside the weights")


def run_convert(args: argparse.Namespace) -> int:
    """Convert an official checkpoint (Hub layout or raw training file) into this package's format."""
    kind, dropped = convert_checkpoint(args.src, args.dst, kind=args.kind, config=args.config)
    print(f"converted {kind} {args.src} -> {args.dst}")
    if dropped:
        groups: dict[str, int] = {}
        for k in dropped:
            head = k.split(".")[0] if not k.startswith("decoder.") else k
            groups[head] = groups.get(head, 0) + 1
        print("dropped training-only tensors: " + ", ".join(f"{g} ({n})" for g, n in sorted(groups.items())))
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
    from ..train.export import export_checkpoint

    dest = export_checkpoint(args.run, args.step, args.out, args.weights)
    print(
        f"wrote {dest} ({args.weights} weights of {args.run}, step "
        f"{args.step if args.step is not None else 'newest'}); "
        "load it with from_pretrained"
    )
    return 0


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=SEED, default=0, help="seed of the tiny models and inputs")


def _count(model_cls: type, cfg: object) -> int:
    """Parameter count of a model built on the meta device (no memory or init cost)."""
    return model_cls.parameter_count(cfg)


def _print_presets() -> None:
    """Every registered family's presets with their sizes."""
    for kind in ("tokenizer", "generator"):
        print(f"\n{kind} presets:")
        for cls in model_classes(kind):
            for name, cfg in cls.presets.items():
                print(f"  {name:18s} {cfg.summary()}  {_count(cls, cfg):>12,d} params")


def run_info(args: argparse.Namespace) -> int:
    """Print the presets and run a seeded tokenize -> decode -> generate round trip on the tiny presets."""
    from ..models import HARGenerator, ResTok

    print(f"restok {__version__} (torch {torch.__version__})")
    _print_presets()
    torch.manual_seed(args.seed)
    tok = ResTok.from_preset("restok-tiny").eval()
    gen = HARGenerator.from_preset("har-tiny").eval()
    images = torch.rand(
        2, 3, tok.config.image_size, tok.config.image_size, generator=torch.Generator().manual_seed(args.seed)
    )
    t0 = time.perf_counter()
    ids = tok.encode(images)
    recon = {k: tok.decode(ids[:, :k]) for k in tok.prefix_lengths}
    t1 = time.perf_counter()
    samples = gen.generate([0, 1], RELEASED_RECIPE, generator=torch.Generator().manual_seed(args.seed))
    t2 = time.perf_counter()
    print("\nround trip on untrained tiny presets (random weights; shapes and timings only):")
    print(f"  encode {list(images.shape)} -> ids {list(ids.shape)}; decode prefixes {list(recon)} in {t1 - t0:.2f}s")
    print(f"  HAR generate 2 samples: {gen.num_steps} calls, ids {list(samples.shape)} in {t2 - t1:.2f}s")
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
