"""Content hashes that outputs record: of a file, and of a model's tensors in memory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import torch

__all__ = ["file_sha256", "state_dict_sha256"]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 over the names, dtypes, shapes and bytes of a state dict (a fingerprint of weights in memory)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
