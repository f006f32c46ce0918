"""``restok train tokenizer|generator``, ``restok extract-codes``, ``restok check-codes``: training and its data.

Run unchanged under ``accelerate launch`` or ``torchrun`` for several processes/GPUs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ..train.experiment import ExperimentRequest, run_experiment
from ..train.jobs import (
    CheckCodesRequest,
    ExtractCodesRequest,
    TrainRequest,
    run_train,
)
from ..train.jobs import run_check_codes as run_check_codes_job
from ..train.jobs import run_extract_codes as run_extract_codes_job
from .base import Command, request
from .options import (
    batch_option,
    device_option,
    group,
    model_options,
    number,
    output_option,
    progress_option,
    target_type,
)

__all__ = ["COMMANDS"]


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("accelerate").setLevel(logging.WARNING)


def _report(result: Any, main: bool) -> int:
    """Print where the run stands (main process only); exit status 0, or 128 + signal when interrupted."""
    code = 0 if result.status != "interrupted" else 128 + int(result.signal or 0)
    if not main:
        return code
    if result.status == "finished":
        print(f"finished at step {result.step}; final EMA weights: {result.final} (load with from_pretrained)")
    elif result.status == "stopped":
        print(f"stopped at step {result.step} (--stop-at); checkpoint {result.checkpoint}; continue with --resume")
    else:
        print(
            f"interrupted at step {result.step}; checkpoint {result.checkpoint}; continue with --resume",
            file=sys.stderr,
        )
    return code


# ------------------------------------------------------------------------------------------- train
def _run_arguments(p: argparse.ArgumentParser) -> None:
    """What every training run takes besides its data."""
    p.add_argument(
        "--config", required=True, help="recipe name (restok-l-128, restok-tiny, har-l, har-tiny, ...) or YAML file"
    )
    output_option(p, "run folder (config, logs, grids, checkpoints, final/)")
    p.add_argument(
        "--init",
        default=None,
        metavar="SRC",
        help="fine-tune: start from this trained model (Hub id, folder or release file of the recipe's family) -- its "
        "weights and its architecture (the recipe's model size settings give way to the source's)",
    )
    g = group(p, "run length and resume")
    g.add_argument(
        "--max-steps", type=number(int, ge=1, le=10**12), default=None, help="length of the run and of its LR schedule"
    )
    g.add_argument(
        "--stop-at",
        type=number(int, ge=1, le=10**12),
        default=None,
        help="end early after this step's checkpoint (as an interruption would)",
    )
    g.add_argument("--resume", action="store_true", help="continue from the run folder's newest complete checkpoint")
    g = group(p, "before a long run")
    g.add_argument(
        "--preflight",
        action="store_true",
        help="check on every rank (launcher, a collective, shared --out, same data, batch arithmetic, disk, memory) "
        "and exit: 0 ready, 1 with a blocker; nothing is trained",
    )
    g.add_argument(
        "--preflight-timeout",
        type=number(float, gt=0, le=86400),
        default=60.0,
        help="seconds the collective may take (default: 60)",
    )
    g.add_argument(
        "--devices",
        type=number(int, ge=1, le=10**6),
        default=None,
        help="fit the recipe to this many devices (processes): its global batch as per-device micro-batches x "
        "gradient accumulation, learning rate and schedule unchanged; printed before the run",
    )
    g.add_argument(
        "--memory-per-device",
        type=number(float, gt=0, le=10**6),
        default=None,
        metavar="GB",
        help="memory of each device for --devices (default: what this process's device has free)",
    )
    device_option(p)
    progress_option(p)
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. optimizer.lr=3e-4 batch_size=64")


def _tokenizer_run_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "data")
    g.add_argument(
        "--data",
        required=True,
        help="image folder (one sub-folder per class, or flat), .tar shards, or a Hugging Face "
        "dataset (save_to_disk folder, parquet, hf:ID[?split=..&image=..&label=..])",
    )
    g.add_argument(
        "--eval-data",
        default=None,
        help="held-out images for validation every eval_every steps (restok-l-128: every 50,000)",
    )
    _run_arguments(p)


def _generator_run_arguments(p: argparse.ArgumentParser) -> None:
    group(p, "data").add_argument("--codes", required=True, help="code set written by 'restok extract-codes'")
    _run_arguments(p)


def _train(args: argparse.Namespace, kind: str, data: str) -> int:
    """Train (or check before training) as the options ask; print where the run stands."""
    _setup_logging()
    req = request(TrainRequest, args, kind=kind, data=data)
    outcome = run_train(req, announce=lambda line: print(line, flush=True))
    if req.preflight:
        for line in outcome.preflight:
            print(line, flush=True)
        if outcome.preflight:
            ready = "BLOCKED: fix the blocker lines above before the run" if outcome.blocked else "ready"
            print(f"preflight: {ready}", flush=True)
        return 1 if outcome.blocked else 0
    return _report(outcome.result, outcome.main)


def run_train_tokenizer(args: argparse.Namespace) -> int:
    """Train a tokenizer on images."""
    return _train(args, "tokenizer", args.data)


def run_train_generator(args: argparse.Namespace) -> int:
    """Train a generator on a code set."""
    return _train(args, "generator", args.codes)


# ------------------------------------------------------------------------------------------- code sets
def _extract_arguments(p: argparse.ArgumentParser) -> None:
    model_options(p, tokenizer="required")
    g = group(p, "data")
    g.add_argument("--data", required=True, help="image folder or .tar shards")
    g.add_argument(
        "--crop",
        default="ten-crop",
        choices=["ten-crop", "center", "center-only"],
        help="ten-crop with flips (official), centre + flip, or the centre crop alone (no mirror: digits, text)",
    )
    g.add_argument("--shard-size", type=number(int, ge=1, le=10**9), default=10_000, help="images per shard")
    g.add_argument(
        "--target-psnr",
        type=target_type("psnr"),
        default=None,
        help="a ragged code set: each crop keeps the shortest prefix reaching this PSNR (shard-*.lengths.npy)",
    )
    output_option(p, "output folder of the code set")
    device_option(p)
    batch_option(p, 32, "images per batch (each with all its crops)")
    progress_option(p)


def run_extract_codes(args: argparse.Namespace) -> int:
    """Tokenize a dataset into a sharded, resumable code set (all processes of a torchrun/accelerate job)."""
    meta = run_extract_codes_job(request(ExtractCodesRequest, args))
    if meta is not None:
        print(
            f"wrote {meta['num_samples']} samples x {meta['num_crops']} crops x {meta['num_tokens']} tokens "
            f"in {len(meta['shards'])} shard(s) to {args.out} ({len(meta['skipped'])} unreadable files skipped)"
        )
    return 0


def _check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("codes", help="code set folder")
    model_options(p, tokenizer="optional")
    g = group(p, "data")
    g.add_argument("--data", default=None, help="the source images, to re-encode --verify samples")
    g.add_argument(
        "--verify",
        type=number(int, ge=0, le=10**9),
        default=4,
        help="images to re-encode, spread over every shard (default: 4)",
    )


def run_check_codes(args: argparse.Namespace) -> int:
    """Validate a code set (and optionally re-encode a few images with its tokenizer)."""
    report = run_check_codes_job(request(CheckCodesRequest, args))
    print(json.dumps({k: v for k, v in report.items() if k != "meta"}))
    print(f"ok: {args.codes} is a complete, consistent code set")
    return 0


# ------------------------------------------------------------------------------------------- experiment
def _experiment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="grid file (YAML): data, eval_data, seeds, steps, rows of tokenizer/generator recipes")
    output_option(p, "experiment folder (cells/, reference.npz, table.csv|json|md, rate.png, commands.md)")
    g = group(p, "splitting the grid")
    g.add_argument(
        "--task",
        type=number(int, ge=0, le=10**6),
        default=None,
        help="run every --tasks-th cell from this one (default: $SLURM_ARRAY_TASK_ID, else 0)",
    )
    g.add_argument(
        "--tasks",
        type=number(int, ge=1, le=10**6),
        default=None,
        help="how many tasks share the grid (default: $SLURM_ARRAY_TASK_COUNT, else 1)",
    )
    device_option(p)
    progress_option(p)


def run_experiment_command(args: argparse.Namespace) -> int:
    """Run this task's cells of a grid; write the table once every cell is done."""
    _setup_logging()
    result = run_experiment(request(ExperimentRequest, args), announce=lambda m: print(m, flush=True))
    if result is not None:
        for w in result["warnings"]:
            print(f"warning: {w}", flush=True)
        print(f"wrote {args.out}/table.csv, table.json, table.md, rate.png, commands.md", flush=True)
    return 0


COMMANDS = (
    Command(
        "experiment",
        "a grid of tokenizer/generator recipes x seeds, each cell trained and scored alike: one table with intervals",
        _experiment_arguments,
        run_experiment_command,
    ),
    Command(
        "train",
        "train a tokenizer or a generator (accelerate launch / torchrun for many GPUs)",
        subcommands=(
            Command("tokenizer", "train a tokenizer", _tokenizer_run_arguments, run_train_tokenizer),
            Command("generator", "train a generator", _generator_run_arguments, run_train_generator),
        ),
    ),
    Command(
        "extract-codes",
        "tokenize a dataset for generator training (sharded, resumable)",
        _extract_arguments,
        run_extract_codes,
    ),
    Command(
        "check-codes",
        "validate a code set against its format and, optionally, its tokenizer",
        _check_arguments,
        run_check_codes,
    ),
)
