"""What the sampler needs from a model, and nothing more: the contract between :mod:`restok.sampling` and every
autoregressive generator (HAR, vanilla AR, ...), and the explicit KV cache a sampling run owns.

A generator family implements :class:`Sampleable`; the sampler (eager, uncached or compiled) calls only these
members, so it never imports a model and a new family samples with it unchanged.

Axes: B batch, L tokens, D width, n positions of one step, V vocabulary, h_kv key/value heads, d head size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["KVCache", "Sampleable"]


@dataclass
class KVCache:
    """Static per-layer key/value buffers ``(B, h_kv, L, d)``, written in place by the decode steps of one sampling
    run (explicit state: the model keeps none between calls)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def tensors(self) -> list[torch.Tensor]:
        """Every buffer (for zeroing, and for fixing their addresses under CUDA graphs)."""
        return [*self.keys, *self.values]


@runtime_checkable
class Sampleable(Protocol):
    """The members of a generator that sampling uses."""

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are."""

    @property
    def num_tokens(self) -> int:
        """L, the sequence length generated."""

    @property
    def vocab_size(self) -> int:
        """V: ids are in [0, V)."""

    @property
    def null_class(self) -> int:
        """The class id of the unconditional branch of guidance."""

    @property
    def supports_guidance(self) -> bool:
        """Whether the class table has that null row."""

    @property
    def step_positions(self) -> tuple[tuple[int, int], ...]:
        """``(start, end)`` positions predicted by each model call."""

    def check_labels(self, labels: Any) -> torch.Tensor:
        """(B,) int64 class ids, or a ValueError naming the bad ones."""

    def embed_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) class ids, the null class allowed -> (B, 1, D) class embeddings."""

    def new_cache(self, batch: int) -> KVCache:
        """Zeroed key/value buffers for ``batch`` sequences."""

    def step_mask(self, start: int, end: int) -> torch.Tensor:
        """(n, L) boolean attention rows of positions ``[start, end)``."""

    def step_logits(
        self, tokens: torch.Tensor, class_emb: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """One cached call: tokens (B, L) known so far -> float32 logits (B, n, V) at ``positions`` (n,), whose keys and
        values it writes into ``cache``."""

    def forward(
        self, tokens: torch.Tensor, class_labels: torch.Tensor, drop_labels: bool | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) of every position, without a cache (``use_cache=False`` only)."""
