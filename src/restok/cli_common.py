"""What every ``restok`` command shares: the one-line error type, devices, progress bars, the model-running
options, the sampling options (one helper builds a :class:`~restok.sampling.SamplingConfig` for every command) and
the process group of a torchrun/accelerate launch."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Iterator, Sequence

import torch

from .precision import DTYPES
from .sampling import CFG_SCHEDULES, SAMPLING_PRESETS, SamplingConfig

__all__ = [
    "CLIError",
    "progress",
    "resolve_device",
    "batches",
    "add_model_options",
    "add_sampling_options",
    "sampling_from_args",
    "process_group",
]


class CLIError(Exception):
    """An error reported to the user as one line."""


def progress(it: Any, desc: str, total: int | None = None) -> Any:
    """A tqdm progress bar on stderr (silent when tqdm is missing)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return it
    return tqdm(it, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True)


def resolve_device(name: str) -> torch.device:
    """Resolve ``auto`` to cuda, then mps, then cpu; refuse a device that is not there."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name == "mps" and not mps:
        raise CLIError("--device mps: MPS is not available (use --device cpu or auto)")
    return torch.device(name)


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive chunks of ``items``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def add_model_options(p: argparse.ArgumentParser, batch_size: int = 16) -> None:
    """``--device``, ``--dtype``, ``--pixel-dtype`` and ``--batch-size``, which every model-running command takes."""
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="where to run (default: auto)")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES), help="autocast precision (default: fp32)")
    p.add_argument("--pixel-dtype", default="fp32", choices=list(DTYPES),
                   help="precision of the CNN pixel decoder (default: fp32, as the official code; bf16 is faster, "
                        "pixels within bf16 rounding)")
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"images per batch (default: {batch_size})")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """The sampling options: a recipe (``--sampling`` preset name or JSON file), then any setting changed."""
    p.add_argument("--sampling", default=None, metavar="PRESET|FILE.json",
                   help=f"sampling recipe: {' or '.join(SAMPLING_PRESETS)} (preset), or a JSON file (e.g. a guidance "
                        "search's best.json); default: the generator's own (generation_config.json; the released "
                        "recipe for the official weights)")
    p.add_argument("--cfg-scale", type=float, default=None, help="guidance scale (1 = none)")
    p.add_argument("--cfg-schedule", default=None, choices=sorted(CFG_SCHEDULES), help="guidance schedule")
    p.add_argument("--cfg-start", type=float, default=None, help="ratio where the 'step' schedule starts")
    p.add_argument("--top-k", type=int, default=None, help="0 = off")
    p.add_argument("--top-p", type=float, default=None, help="1.0 = off")
    p.add_argument("--temperature", type=float, default=None)


def add_compile_option(p: argparse.ArgumentParser) -> None:
    """``--compile``: the compiled sampling steps and decode of :mod:`restok.compiled`."""
    p.add_argument("--compile", action="store_true",
                   help="run each HAR step shape and the decode as one torch.compile graph (CUDA graphs on CUDA); the "
                        "first batch of each size compiles, later ones are faster; same tokens as without")


def sampling_from_args(args: argparse.Namespace, default: SamplingConfig) -> SamplingConfig:
    """The recipe the options name: ``--sampling`` (or ``default``), with each given setting changed."""
    base = default
    if args.sampling is not None:
        base = SAMPLING_PRESETS[args.sampling] if args.sampling in SAMPLING_PRESETS else SamplingConfig.load(args.sampling)
    try:
        return base.replace(cfg_scale=args.cfg_scale, cfg_schedule=args.cfg_schedule, cfg_start=args.cfg_start,
                            top_k=args.top_k, top_p=args.top_p, temperature=args.temperature)
    except ValueError as e:
        raise CLIError(f"sampling: {e}") from None


def process_group(device: str) -> tuple[int, int, Callable[[], None] | None, torch.device]:
    """Rank, world size, barrier and device, from torchrun/accelerate when launched that way."""
    try:
        from accelerate import PartialState
    except ImportError:
        dev = torch.device("cuda" if torch.cuda.is_available() and device != "cpu" else "cpu")
        return 0, 1, None, dev
    s = PartialState(cpu=device == "cpu")
    return s.process_index, s.num_processes, s.wait_for_everyone, s.device
