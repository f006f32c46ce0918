"""The whole test suite's wall time as the README runs it, beside a fixed CPU reference measured just before.

The suite's time on a shared 2-core machine moves with the machine (the same commit took 5:20 and 6:23 on one day);
the reference -- a fixed single-thread convolution + matmul loop and one ``import torch`` -- says how fast the machine
was at the time, so that rows measured on different days can be compared.

    python benchmarks/suite_time.py            # prints one Markdown table row (about 6 minutes)
    python benchmarks/suite_time.py --quick    # the quick tier (-m "not slow")
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def reference() -> tuple[float, float]:
    """Seconds for the fixed compute loop (one thread) and for a fresh interpreter's ``import torch``."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(64, 32, 32, 32, generator=g), torch.randn(64, 32, 3, 3, generator=g)
    a, b = torch.randn(256, 512, generator=g), torch.randn(512, 512, generator=g)
    t = time.perf_counter()
    for _ in range(40):
        torch.nn.functional.conv2d(x, w, padding=1)
        a @ b @ b
    compute = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return compute, time.perf_counter() - t


def main() -> None:
    """Measure the reference, run the suite, print the row."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help='the quick tier (-m "not slow")')
    args = ap.parse_args()
    compute, imp = reference()
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"]
    cmd += ["-m", "not slow"] if args.quick else []
    # CI's settings: a test that needs a system package fails instead of skipping
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1"}
    env.update(RESTOK_REQUIRE_BROWSER="1", RESTOK_REQUIRE_COMPILER="1")
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    counts = re.sub(r"\s+in [\d.]+s.*$", "", last.strip("= "))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print("| date | commit | tier | reference compute (s) | import torch (s) | suite wall (s) | result |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {datetime.date.today()} | {commit.strip()} | {'quick' if args.quick else 'whole'} | {compute:.2f} | "
        f"{imp:.2f} | {wall:.0f} | {counts} |"
    )
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
