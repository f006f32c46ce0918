"""Shared helpers for the benchmark scripts: timing after warm-up, peak memory, tables, machine info."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (timings must include it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], Any], device: torch.device, warmup: int = 1, repeat: int = 3) -> float:
    """Median wall seconds of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory while running ``fn``: the CUDA allocator's peak, or on CPU the whole process's peak RSS
    (so run one configuration per process to compare)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine() -> str:
    """One line describing where the numbers come from."""
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    else:
        cpu = platform.processor() or platform.machine()
        dev = f"CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    return f"{dev}; torch {torch.__version__}; {datetime.now(timezone.utc).date().isoformat()}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table (paste into benchmarks/RESULTS.md)."""
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(fmt(v) for v in r) + " |")


def device_from(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def autocast(device: torch.device, dtype: str) -> Any:
    """Autocast to a named precision (``fp32`` = none), as the CLI's ``--dtype`` does."""
    from restok.runtime.precision import DTYPES, autocast_to

    return autocast_to(device, DTYPES[dtype])


def pixel_dtype(dtype: str) -> torch.dtype:
    """The pixel decoder's precision for a benchmark dtype: bf16 rows also run it in bfloat16 (opt-in in restok)."""
    return torch.bfloat16 if dtype == "bf16" else torch.float32


def timeit_interleaved(
    fns: Sequence[Callable[[], Any]], device: torch.device, warmup: int = 1, repeat: int = 3
) -> list[float]:
    """Fastest wall seconds of each of ``fns``, timed in turn round after round: on a shared machine the load
    drifts, and interleaving exposes every function to the same drift, so their ratios are fair."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync(device)
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            sync(device)
            best[i] = min(best[i], time.perf_counter() - t)
    return best


# Dense (no sparsity) peak TFLOP/s by GPU name fragment: fp32 is the CUDA-core rate (PyTorch's default keeps
# TF32 off for matmuls), bf16 the tensor-core rate. From the vendors' data sheets (SXM parts).
GPU_PEAK_TFLOPS = {
    "H200": {"fp32": 67.0, "bf16": 989.0},
    "H100": {"fp32": 67.0, "bf16": 989.0},
    "A100": {"fp32": 19.5, "bf16": 312.0},
}


def peak_tflops(device: torch.device, dtype: str) -> float | None:
    """The chip's dense peak for ``dtype`` when it is a known GPU, else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in GPU_PEAK_TFLOPS.items():
        if key in name:
            return peaks.get(dtype)
    return None
