"""``restok train tokenizer|generator``, ``restok extract-codes``, ``restok check-codes``.

Run unchanged under ``accelerate launch`` or ``torchrun`` for several processes/GPUs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from .cli_common import process_group

__all__ = ["add_train_commands"]


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("accelerate").setLevel(logging.WARNING)


def _report(result: Any) -> int:
    """Print where the run stands (main process only); exit status 0, or 128 + signal when interrupted."""
    if os.environ.get("RANK", "0") != "0":
        return 0 if result.status != "interrupted" else 128 + int(result.signal or 0)
    if result.status == "finished":
        print(f"finished at step {result.step}; final EMA weights: {result.final} (load with from_pretrained)")
        return 0
    if result.status == "stopped":
        print(f"stopped at step {result.step} (--stop-at); checkpoint {result.checkpoint}; continue with --resume")
        return 0
    print(f"interrupted at step {result.step}; checkpoint {result.checkpoint}; continue with --resume", file=sys.stderr)
    return 128 + int(result.signal or 0)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a tokenizer or a generator."""
    from .train import load_train_config, train_generator, train_tokenizer

    _setup_logging()
    overrides = list(args.overrides)
    if getattr(args, "eval_data", None):
        overrides.append(f"eval_data={args.eval_data}")
    cfg = load_train_config(args.config, args.kind, overrides)
    device = None if args.device == "auto" else args.device
    common = dict(max_steps=args.max_steps, stop_at=args.stop_at, resume=args.resume, device=device, progress=not args.no_progress)
    if args.kind == "tokenizer":
        result = train_tokenizer(cfg, args.data, args.out, **common)
    else:
        result = train_generator(cfg, args.codes, args.out, **common)
    return _report(result)


def cmd_export(args: argparse.Namespace) -> int:
    """Write a kept checkpoint's EMA (or raw) weights as an inference model."""
    from .train.export import export_checkpoint

    dest = export_checkpoint(args.run, args.step, args.out, args.weights)
    print(f"wrote {dest} ({args.weights} weights of {args.run}, step {args.step if args.step is not None else 'newest'}); "
          "load it with from_pretrained")
    return 0


def cmd_extract_codes(args: argparse.Namespace) -> int:
    """Tokenize a dataset into a sharded, resumable code set (all processes of a torchrun/accelerate job)."""
    from .codes import extract_codes
    from .data import open_image_source
    from .tokenizer import ResTok

    rank, world, barrier, device = process_group(args.device)
    tok = ResTok.from_pretrained(args.tokenizer, device=device)
    source = open_image_source(args.data)
    meta = extract_codes(
        tok, source, args.out, crop=args.crop, batch_size=args.batch_size, shard_size=args.shard_size,
        rank=rank, world=world, barrier=barrier, progress=not args.no_progress, target_psnr=args.target_psnr,
    )
    if meta is not None:
        print(
            f"wrote {meta['num_samples']} samples x {meta['num_crops']} crops x {meta['num_tokens']} tokens "
            f"in {len(meta['shards'])} shard(s) to {args.out} ({len(meta['skipped'])} unreadable files skipped)"
        )
    return 0


def cmd_check_codes(args: argparse.Namespace) -> int:
    """Validate a code set (and optionally re-encode a few images with its tokenizer)."""
    from .codes import check_codes
    from .data import open_image_source
    from .tokenizer import ResTok

    tok = ResTok.from_pretrained(args.tokenizer).eval() if args.tokenizer else None
    source = open_image_source(args.data) if args.data else None
    report = check_codes(args.codes, tok, source, num_verify=args.verify)
    print(json.dumps({k: v for k, v in report.items() if k != "meta"}))
    print(f"ok: {args.codes} is a complete, consistent code set")
    return 0


def add_train_commands(sub: Any) -> None:
    """Register the training subcommands on the main parser's subparsers."""
    t = sub.add_parser("train", help="train a tokenizer or a generator (accelerate launch / torchrun for many GPUs)")
    tsub = t.add_subparsers(dest="kind", required=True)
    for kind in ("tokenizer", "generator"):
        s = tsub.add_parser(kind, help=f"train a {kind}")
        s.add_argument("--config", required=True, help="recipe name (restok-l-128, restok-tiny, har-l, har-tiny, ...) or YAML file")
        if kind == "tokenizer":
            s.add_argument("--data", required=True, help="image folder (one sub-folder per class, or flat) or .tar shards")
            s.add_argument("--eval-data", default=None,
                           help="held-out images for validation every eval_every steps (restok-l-128: every 50,000)")
        else:
            s.add_argument("--codes", required=True, help="code set written by 'restok extract-codes'")
        s.add_argument("--out", required=True, help="run folder (config, logs, grids, checkpoints, final/)")
        s.add_argument("--max-steps", type=int, default=None, help="length of the run and of its LR schedule")
        s.add_argument("--stop-at", type=int, default=None, help="end early after this step's checkpoint (as an interruption would)")
        s.add_argument("--resume", action="store_true", help="continue from the run folder's newest complete checkpoint")
        s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when available")
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
        s.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. optimizer.lr=3e-4 batch_size=64")
        s.set_defaults(func=cmd_train)

    s = sub.add_parser("export", help="write a kept training checkpoint as an inference model (e.g. the 750k-step EMA)")
    s.add_argument("run", help="run folder of 'restok train'")
    s.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    s.add_argument("--out", default=None, help="output folder (default: RUN/export-step-<step>)")
    s.add_argument("--weights", default="ema", choices=["ema", "model"], help="EMA weights (default) or the raw ones")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("extract-codes", help="tokenize a dataset for generator training (sharded, resumable)")
    s.add_argument("--tokenizer", required=True, help="tokenizer directory, file or Hub id")
    s.add_argument("--data", required=True, help="image folder or .tar shards")
    s.add_argument("--out", required=True, help="output folder of the code set")
    s.add_argument("--crop", default="ten-crop", choices=["ten-crop", "center", "center-only"],
                   help="ten-crop with flips (official), centre + flip, or the centre crop alone (no mirror: digits, text)")
    s.add_argument("--batch-size", type=int, default=32, help="images per batch (each with all its crops)")
    s.add_argument("--shard-size", type=int, default=10_000, help="images per shard")
    s.add_argument("--target-psnr", type=float, default=None,
                   help="a ragged code set: each crop keeps the shortest prefix reaching this PSNR (shard-*.lengths.npy)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_extract_codes)

    s = sub.add_parser("check-codes", help="validate a code set against its format and, optionally, its tokenizer")
    s.add_argument("codes", help="code set folder")
    s.add_argument("--tokenizer", default=None, help="check the config matches (and re-encode with --data)")
    s.add_argument("--data", default=None, help="the source images, to re-encode --verify samples")
    s.add_argument("--verify", type=int, default=4, help="images to re-encode (default: 4)")
    s.set_defaults(func=cmd_check_codes)
