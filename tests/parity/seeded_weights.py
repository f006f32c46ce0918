"""Deterministic random weights keyed by parameter name, shared by the parity fixtures and tests.

The official code and ours build their modules in different orders, so weights drawn from one global
seed would differ. Instead every tensor is drawn from its own generator, seeded from the run seed and
the tensor's name, so both sides can regenerate identical state dicts from ``(names, shapes, seed)``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import torch

_NORM_WORDS = ("norm", "ln_pre", "ln_post", "gamma")


def _is_norm_scale(name: str) -> bool:
    """Whether ``name`` is a multiplicative scale (LayerNorm/GroupNorm/RMSNorm weight or LayerScale)."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf.startswith("gamma") or (leaf == "weight" and any(w in name for w in _NORM_WORDS))


def seeded_tensor(name: str, shape: Sequence[int], seed: int) -> torch.Tensor:
    """One float32 tensor for parameter ``name``, drawn from a generator seeded by (seed, name)."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
    shape = tuple(int(s) for s in shape)
    noise = torch.randn(shape, generator=gen, dtype=torch.float64)
    leaf = name.rsplit(".", 1)[-1]
    if _is_norm_scale(name):
        out = 1.0 + 0.1 * noise
    elif leaf.endswith("bias"):
        out = 0.05 * noise
    elif len(shape) >= 2 and "embedding" not in name and "token" not in name:
        fan_in = math.prod(shape[1:])
        out = noise / math.sqrt(fan_in)
    else:
        # embeddings, codebooks, mask/level tokens: unit scale so they matter after the first norm
        out = noise
    return out.to(torch.float32)


def seeded_state_dict(shapes: Mapping[str, Sequence[int]], seed: int) -> dict[str, torch.Tensor]:
    """A full state dict of seeded tensors for the given ``{name: shape}``."""
    return {name: seeded_tensor(name, shape, seed) for name, shape in sorted(shapes.items())}
