"""``restok data prepare|check``: a dataset of any supported source into webdataset-layout tar shards, and what a
folder of shards holds (the work is :mod:`restok.data.prepare`)."""

from __future__ import annotations

import argparse
import json

from ..data.prepare import CheckShardsRequest, PrepareRequest, run_check_shards
from ..data.prepare import run_prepare as prepare_request
from .base import Command, request
from .options import group, number, output_option, progress_option

__all__ = ["COMMANDS"]


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "data")
    g.add_argument(
        "source",
        help="image folder, tar shards, a Hugging Face dataset (save_to_disk folder, parquet, hf:ID"
        "[?split=..&image=..&label=..]) or embedded:NAME",
    )
    g.add_argument(
        "--max-shard-mb",
        type=number(float, gt=0, le=1e6),
        default=1024.0,
        help="shard size bound in MB (default: 1024)",
    )
    g.add_argument(
        "--max-samples",
        type=number(int, ge=1, le=10**8),
        default=10_000,
        help="samples per shard at most (default: 10,000)",
    )
    g.add_argument(
        "--resize",
        type=number(int, ge=8, le=8192),
        default=None,
        metavar="SIDE",
        help="re-encode every image with this short side (e.g. 288 for 256-px training); default: original bytes",
    )
    output_option(p, "output folder (shard-NNNNNN.tar, classes.json, prepare.json; a rerun resumes)")
    progress_option(p)


def run_prepare(args: argparse.Namespace) -> int:
    """Write the shards; exit 1 when some samples could not be read (each named in classes.json)."""
    info = prepare_request(request(PrepareRequest, args), lambda m: print(m, flush=True))
    print(
        f"wrote {len(info['shards'])} shard(s), {info['num_samples']} samples, {len(info['class_names'])} classes to "
        f"{args.out}"
        + (f"; {len(info['skipped'])} unreadable sample(s) skipped (listed in classes.json)" if info["skipped"] else "")
    )
    return 1 if info["skipped"] else 0


def _check_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "data")
    g.add_argument("folder", help="a folder of .tar shards (from 'restok data prepare' or elsewhere)")
    g.add_argument(
        "--processes", type=number(int, ge=1, le=100_000), default=1, help="processes of the run (GPUs x nodes)"
    )
    g.add_argument("--workers", type=number(int, ge=1, le=1024), default=1, help="data-loader workers per process")
    g.add_argument("--decode", action="store_true", help="decode every image (default: check each image's header)")
    progress_option(p)


def run_check(args: argparse.Namespace) -> int:
    """Print the facts and one line per finding; exit 1 when there are findings."""
    rep = run_check_shards(request(CheckShardsRequest, args))
    print(json.dumps(rep.facts))
    for line in rep.findings:
        print(line)
    return 1 if rep.findings else 0


COMMANDS = (
    Command(
        "data",
        "datasets into tar shards, and checks of shards",
        subcommands=(
            Command(
                "prepare",
                "any source (folder, shards, Hugging Face dataset) to webdataset-layout tar shards (resumable)",
                _prepare_arguments,
                run_prepare,
            ),
            Command(
                "check",
                "counts, classes, unreadable members, shard sizes, shard arithmetic for processes x workers",
                _check_arguments,
                run_check,
            ),
        ),
    ),
)
