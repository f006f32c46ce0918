"""Precisions by name (``fp32``, ``bf16``, ``fp16``) and autocast to one of them, for the CLI, evaluation
and the pixel decoder's ``pixel_dtype``."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["DTYPES", "autocast_to", "parse_dtype"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_to(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; nothing for None or float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_NAMES = {
    **DTYPES,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "half": torch.float16,
}


def parse_dtype(value: torch.dtype | str) -> torch.dtype:
    """A float dtype from a ``torch.dtype`` or a name (``fp32``, ``bf16``, ``fp16``, ``float32``, ``torch.bfloat16``,
    ...)."""
    if isinstance(value, torch.dtype):
        if not value.is_floating_point:
            raise ValueError(f"expected a floating-point dtype, got {value}")
        return value
    key = str(value).lower().removeprefix("torch.")
    if key not in _NAMES:
        raise ValueError(f"unknown dtype {value!r}; choose one of {sorted(_NAMES)}")
    return _NAMES[key]
