"""Precisions by name (``fp32``, ``bf16``, ``fp16``) and autocast to one of them, for the CLI, evaluation
and the pixel decoder's ``pixel_dtype``."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["DTYPES", "autocast_to"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_to(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; nothing for None or float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
