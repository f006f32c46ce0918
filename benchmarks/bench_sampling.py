"""HAR sampling throughput: HAR (9 calls for 128 tokens) vs vanilla AR (128 calls), KV cache vs none,
tokens only and tokens + decode, guidance on, at several batch sizes.

    python benchmarks/bench_sampling.py --size tiny            # seconds on a laptop CPU
    python benchmarks/bench_sampling.py --size full --batches 1 16 64 --dtype fp32 bf16 [--compile]

``--size full`` is GPT-L HAR + restok-l-128 (random weights: speed does not depend on them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import autocast, device_from, machine, peak_tflops, pixel_dtype, print_table, timeit  # noqa: E402

from restok import HARGenerator, ResTok  # noqa: E402

SIZES = {"tiny": ("har-tiny", "restok-tiny"), "full": ("har-l", "restok-l-128")}


def flops_per_image(fn: Callable[[], Any], batch: int) -> float:
    """FLOPs of one image through ``fn`` (a whole batch of ``batch``), counted by PyTorch's FLOP counter (matmuls,
    attention and convolutions: the work a compute floor is made of)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / batch


def main() -> None:
    """Print the sampling table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="also time the compiled path (generate/decode compile=True)")
    ap.add_argument("--only-compiled", action="store_true", help="with --compile: skip the eager rows")
    ap.add_argument("--har-only", action="store_true", help="skip the vanilla-AR rows")
    ap.add_argument("--no-uncached", action="store_true", help="skip the (slow) no-KV-cache rows")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    dev = device_from(args.device)
    gname, tname = SIZES[args.size]
    torch.manual_seed(0)
    tok = ResTok.from_preset(tname).eval().to(dev)
    L, V = tok.num_tokens, tok.codebook_size
    har = HARGenerator.from_preset(gname, num_tokens=L, vocab_size=V).eval().to(dev)
    van = HARGenerator.from_preset(gname, num_tokens=L, vocab_size=V, ar_tokens=L).eval().to(dev)
    for m in (har, van):
        torch.nn.init.normal_(m.output.weight, std=0.02)  # non-degenerate logits
    rows: list[list[Any]] = []
    work: dict[tuple[Any, ...], float] = {}  # FLOPs per image of each workload
    compiled = ([True] if args.only_compiled else [False, True]) if args.compile else [False]
    for comp in compiled:
        for dtype in args.dtype:
            for B in args.batches:
                labels = torch.arange(B, device=dev) % har.config.num_classes
                for name, gen, cached in (
                    ("HAR", har, True),
                    ("vanilla AR", van, True),
                    ("HAR", har, False),
                    ("vanilla AR", van, False),
                ):
                    if (not cached and (args.no_uncached or comp)) or (args.har_only and gen is van):
                        continue

                    def sample(compiled: bool, greedy: bool = False) -> torch.Tensor:
                        """The released recipe (or its greedy variant), seeded, compiled or eager."""
                        filt = {"top_k": 1} if greedy else {"top_p": 0.95}
                        with torch.no_grad(), autocast(dev, dtype):
                            return gen.generate(
                                labels,
                                cfg_scale=3.75,
                                cfg_schedule="step",
                                cfg_start=0.25,
                                **filt,
                                generator=torch.Generator(dev).manual_seed(0),
                                use_cache=cached,
                                compile=compiled,
                            )

                    def decode(ids: torch.Tensor, compiled: bool) -> torch.Tensor:
                        with torch.no_grad(), autocast(dev, dtype):
                            return tok.decode(ids, pixel_dtype(dtype), compile=compiled)

                    t_tok = timeit(lambda: sample(comp), dev, warmup=1, repeat=args.repeat)
                    ids = sample(comp)
                    same = "-"
                    if comp:  # an optimisation must not change the sampled tokens: seeded and greedy against eager
                        same = (
                            "yes"
                            if torch.equal(ids, sample(False)) and torch.equal(sample(True, True), sample(False, True))
                            else "NO"
                        )
                    t_dec = timeit(lambda: decode(ids, comp), dev, warmup=1, repeat=args.repeat)
                    key = (name, dtype, B, cached)
                    if key not in work:  # the same work compiled or not: counted once, always on the eager path
                        work[key] = flops_per_image(lambda: decode(sample(False), False), B)
                    peak = peak_tflops(dev, dtype)
                    floor = 50_000 * work[key] / (peak * 1e12) / 3600 if peak else "-"
                    rows.append(
                        [
                            name,
                            gen.num_steps,
                            "yes" if cached else "no",
                            dtype,
                            "yes" if comp else "no",
                            same,
                            B,
                            B / t_tok,
                            B / (t_tok + t_dec),
                            t_tok,
                            t_dec,
                            work[key] / 1e9,
                            50_000 * (t_tok + t_dec) / B / 3600,
                            floor,
                        ]
                    )
    print(f"machine: {machine()}; models: {gname} + {tname} ({L} tokens); guidance 3.75 step from 0.25, top-p 0.95")
    print(
        "50k floor: 50,000 x (FLOPs per image, generation + decode) / the chip's dense peak for the dtype (GPUs only)"
    )
    print_table(
        f"Sampling ({args.size})",
        [
            "generator",
            "calls",
            "KV cache",
            "dtype",
            "compile",
            "tokens = eager (seeded, greedy)",
            "batch",
            "tokens img/s",
            "tokens+decode img/s",
            "tokens s",
            "decode s",
            "GFLOP/img",
            "50k samples (gFID), h",
            "50k compute floor, h",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
