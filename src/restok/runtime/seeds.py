"""Stable seeds: one integer from several parts, the same on every process, platform and Python run."""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed", "check_seed", "MAX_SEED"]

MAX_SEED = 2**63 - 1  # what every torch.Generator takes on every device


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an int in [0, 2**63 - 1], or a ValueError naming ``name``."""
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int)
        and not (hasattr(seed, "__index__") and not isinstance(seed, float))
    ):
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")
    seed = int(seed)  # type: ignore[call-overload]
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be in [0, {MAX_SEED}], got {seed}")
    return seed


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from several integers/strings (stable across processes, platforms and Python runs)."""
    h = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1
