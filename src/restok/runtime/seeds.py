"""Stable seeds: one integer from several parts, the same on every process, platform and Python run."""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from several integers/strings (stable across processes, platforms and Python runs)."""
    h = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1
