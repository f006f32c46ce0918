"""Shared helpers for the benchmark scripts: timing after warm-up, peak memory, tables, machine info."""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

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
        dev = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
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
    """bf16 autocast, or a no-op for fp32."""
    import contextlib

    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
