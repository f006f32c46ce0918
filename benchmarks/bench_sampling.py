"""HAR sampling throughput: HAR (9 calls for 128 tokens) vs vanilla AR (128 calls), KV cache vs none,
tokens only and tokens + decode, guidance on, at several batch sizes.

    python benchmarks/bench_sampling.py --size tiny            # seconds on a laptop CPU
    python benchmarks/bench_sampling.py --size full --batches 1 16 64 --dtype fp32 bf16 [--compile]

``--size full`` is GPT-L HAR + restok-l-128 (random weights: speed does not depend on them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import autocast, pixel_dtype, device_from, machine, print_table, timeit  # noqa: E402

from restok import HARGenerator, ResTok  # noqa: E402

SIZES = {"tiny": ("har-tiny", "restok-tiny"), "full": ("har-l", "restok-l-128")}


def compiled_copy(gen: HARGenerator) -> HARGenerator:
    """A copy whose cached step is ``torch.compile``d: one graph per step shape (9 for HAR-128), reused
    across calls and batches of the same size."""
    import copy

    c = copy.deepcopy(gen)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, gen.num_steps)  # one graph per step shape
    c.forward_step = torch.compile(c.forward_step, dynamic=False)  # type: ignore[method-assign]
    return c


def main() -> None:
    """Print the sampling table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
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
    rows = []
    compiled = [False, True] if args.compile else [False]
    for comp in compiled:
        for dtype in args.dtype:
            for B in args.batches:
                labels = torch.arange(B, device=dev) % har.config.num_classes
                for name, base, cached in (("HAR", har, True), ("vanilla AR", van, True), ("HAR", har, False), ("vanilla AR", van, False)):
                    if not cached and (args.no_uncached or comp):
                        continue
                    gen = compiled_copy(base) if comp else base

                    def tokens() -> torch.Tensor:
                        with torch.no_grad(), autocast(dev, dtype):
                            return gen.generate(labels, cfg_scale=3.75, cfg_schedule="step", cfg_start=0.25, top_p=0.95,
                                                generator=torch.Generator(dev).manual_seed(0), use_cache=cached)

                    t_tok = timeit(tokens, dev, warmup=1, repeat=args.repeat)
                    ids = tokens()
                    same = "-"
                    if comp:  # an optimisation must not change the sampled tokens
                        with torch.no_grad(), autocast(dev, dtype):
                            greedy = lambda m: m.generate(labels, cfg_scale=3.75, cfg_schedule="step", cfg_start=0.25, top_k=1)  # noqa: E731
                            same = "yes" if torch.equal(greedy(gen), greedy(base)) else "NO"

                    def decode() -> torch.Tensor:
                        with torch.no_grad(), autocast(dev, dtype):
                            return tok.decode(ids, pixel_dtype(dtype))

                    t_dec = timeit(decode, dev, warmup=1, repeat=args.repeat)
                    rows.append([name, gen.num_steps, "yes" if cached else "no", dtype, "yes" if comp else "no", same, B,
                                 B / t_tok, B / (t_tok + t_dec), t_tok, t_dec, 50_000 * (t_tok + t_dec) / B / 3600])
    print(f"machine: {machine()}; models: {gname} + {tname} ({L} tokens); guidance 3.75 step from 0.25, top-p 0.95")
    print_table(f"Sampling ({args.size})", ["generator", "calls", "KV cache", "dtype", "compile", "greedy tokens = eager", "batch",
                "tokens img/s", "tokens+decode img/s", "tokens s", "decode s", "50k samples (gFID), h"], rows)


if __name__ == "__main__":
    main()
