"""One training step (forward, loss, backward, the trainers' fused AdamW) of the tokenizer and the generator:
time, peak memory and achieved model TFLOP/s (forward + backward matmul/conv FLOPs counted by
``torch.utils.flop_counter``, against the chip's dense peak where known), fp32/bf16, optional torch.compile. Each
configuration runs in a fresh process so that peak memory
(CUDA allocator peak, or the process's peak RSS on CPU) belongs to it alone.

    python benchmarks/bench_train_step.py --size tiny
    python benchmarks/bench_train_step.py --size full --batch 4 --dtype fp32 bf16

The tokenizer step uses MSE + quantizer losses (the frozen LPIPS/GAN/alignment networks add a fixed cost
that does not depend on this implementation); the generator step is the HAR cross-entropy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import autocast, device_from, machine, peak_memory_mb, peak_tflops, print_table, timeit  # noqa: E402

SIZES = {"tiny": ("restok-tiny", "har-tiny"), "full": ("restok-l-128", "har-l")}


def worker(kind: str, size: str, batch: int, dtype: str, compile_: bool, device: str, repeat: int) -> dict:
    """Build the model, time ``repeat`` steps after one warm-up, report seconds/step and peak memory."""
    from restok import HARGenerator, ResTok

    dev = device_from(device)
    torch.manual_seed(0)
    tname, gname = SIZES[size]
    if kind == "tokenizer":
        model = ResTok.from_preset(tname).train().to(dev)
        S = model.config.image_size
        x = torch.rand(batch, 3, S, S, device=dev)

        def loss_fn(fwd: Any) -> torch.Tensor:
            out = fwd(x)
            return F.mse_loss(out.reconstruction.float(), x) + out.quantizer_loss
    else:
        model = HARGenerator.from_preset(gname).train().to(dev)
        c = model.config
        t = torch.randint(0, c.vocab_size, (batch, c.num_tokens), device=dev)
        y = torch.randint(0, c.num_classes, (batch,), device=dev)

        def loss_fn(fwd: Any) -> torch.Tensor:
            logits = fwd(t, y)
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), t.reshape(-1))

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # matmul/conv FLOPs of forward + backward, counted eagerly
        with autocast(dev, dtype):
            loss = loss_fn(model)
        loss.backward()
    model.zero_grad(set_to_none=True)
    fwd = torch.compile(model) if compile_ else model  # the compiled graph runs the same math
    from restok.train.config import OptimConfig
    from restok.train.optim import build_optimizer

    opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-4))  # what the trainers use (fused AdamW)

    def step() -> None:
        with autocast(dev, dtype):
            loss = loss_fn(fwd)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # optimizer state exists from here on
    mem = peak_memory_mb(step, dev)
    sec = timeit(step, dev, warmup=0, repeat=repeat)
    return {
        "seconds": sec,
        "peak_mb": mem,
        "params": sum(p.numel() for p in model.parameters()),
        "flops": counter.get_total_flops(),
    }


def main() -> None:
    """Run each configuration in a subprocess and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the chip's peak TFLOP/s for the %%-of-peak column (default: a table of known GPUs, by dtype)",
    )
    ap.add_argument("--worker", nargs=4, metavar=("KIND", "DTYPE", "COMPILE", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, dtype, comp, batch = args.worker
        print(json.dumps(worker(kind, args.size, int(batch), dtype, comp == "1", args.device, args.repeat)))
        return
    rows = []
    for kind in ("tokenizer", "generator"):
        for comp in [False, True] if args.compile else [False]:
            for dtype in args.dtype:
                cmd = [
                    sys.executable,
                    __file__,
                    "--size",
                    args.size,
                    "--device",
                    args.device,
                    "--repeat",
                    str(args.repeat),
                    "--worker",
                    kind,
                    dtype,
                    "1" if comp else "0",
                    str(args.batch),
                ]
                res = json.loads(
                    subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                )
                achieved = res["flops"] / res["seconds"] / 1e12
                peak = args.peak_tflops or peak_tflops(device_from(args.device), dtype)
                rows.append(
                    [
                        kind,
                        f"{res['params']:,}",
                        dtype,
                        "yes" if comp else "no",
                        args.batch,
                        res["seconds"],
                        args.batch / res["seconds"],
                        res["peak_mb"],
                        achieved,
                        f"{achieved / peak:.1%}" if peak else "-",
                    ]
                )
    print(f"machine: {machine()}; size: {args.size}")
    print_table(
        f"Training step ({args.size})",
        [
            "model",
            "params",
            "dtype",
            "compile",
            "batch",
            "s/step",
            "samples/s",
            "peak MiB",
            "model TFLOP/s",
            "of chip peak",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
