"""How much memory a device has free: what model-size checks compare an estimate with before anything is allocated."""

from __future__ import annotations

import os

import torch

__all__ = ["available_memory", "format_bytes"]


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes free on ``device`` now (CUDA: the allocator's free memory; CPU: the kernel's ``MemAvailable``), or None
    when it cannot be told (then nothing is refused)."""
    device = torch.device(device or "cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``320 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
