"""Tokenizer encode and decode throughput (images/s) at batch 1 and 16, fp32/bf16 (bf16 = autocast and the
opt-in bfloat16 pixel decoder), optional torch.compile.

    python benchmarks/bench_tokenizer.py --size tiny
    python benchmarks/bench_tokenizer.py --size full --batches 1 16 --dtype fp32 bf16 [--compile]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import autocast, device_from, machine, pixel_dtype, print_table, timeit  # noqa: E402

from restok import ResTok  # noqa: E402

SIZES = {"tiny": "restok-tiny", "full": "restok-l-128"}


def main() -> None:
    """Print the tokenizer table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time the compiled decode (decode(compile=True)) and a torch.compile'd encode",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    dev = device_from(args.device)
    torch.manual_seed(0)
    tok = ResTok.from_preset(SIZES[args.size]).eval().to(dev)
    S = tok.config.image_size
    rows = []
    for comp in [False, True] if args.compile else [False]:
        enc_c = torch.compile(tok.encode, dynamic=False) if comp else tok.encode  # encode: plain torch.compile
        for dtype in args.dtype:
            for B in args.batches:
                x = torch.rand(B, 3, S, S, device=dev)
                with torch.no_grad():
                    ids = tok.encode(x)

                def enc() -> torch.Tensor:
                    with torch.no_grad(), autocast(dev, dtype):
                        return enc_c(x)

                # decode: the public compiled path (restok.sampling.compiled; CUDA graphs on CUDA)
                def dec() -> torch.Tensor:
                    with torch.no_grad(), autocast(dev, dtype):
                        return tok.decode(ids, pixel_dtype(dtype), compile=comp)

                te, td = timeit(enc, dev, repeat=args.repeat), timeit(dec, dev, repeat=args.repeat)
                rows.append([dtype, "yes" if comp else "no", B, B / te, B / td, B / (te + td)])
    print(f"machine: {machine()}; model: {SIZES[args.size]} ({S} px, {tok.num_tokens} tokens)")
    print_table(
        f"Tokenizer ({args.size})",
        ["dtype", "compile", "batch", "encode img/s", "decode img/s", "encode+decode img/s"],
        rows,
    )


if __name__ == "__main__":
    main()
