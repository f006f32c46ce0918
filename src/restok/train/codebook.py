"""Dead-code re-initialisation, a remedy for codebook collapse (off by default; not in the official recipe).

A 1-D tokenizer's quantizer can settle on a few codes per position (the TiTok-like baseline in
``benchmarks/replication`` used one code per position from the first logged step). Restarting each code that no
process has chosen for ``restart_dead_codes`` steps at one of this step's (l2-normalised) encoder outputs puts it
where the encoder actually writes, so the nearest-code search can pick it again (the k-means restart of
Jukebox / CVQ-VAE style trainers). The official code's only remedy is the entropy term (``entropy_loss_ratio``).

Determinism: which codes are dead follows from the usage of the whole global batch (all-reduced), and which
encoder outputs they take from a generator seeded by (run seed, step) over the gathered global batch, so one
process and N processes restart the same codes to the same vectors; the last-use record is saved in every
checkpoint, so a resumed run restarts exactly as an uninterrupted one.

Axes: K codebook size, C code dim, N encoder outputs in the global batch.
"""

from __future__ import annotations

from typing import Any

import torch

from ..runtime.seeds import derive_seed
from .distributed import copy_whole_, full_tensor, is_dtensor

__all__ = ["DeadCodeRestarter"]

WEIGHT = "quantize.embedding.weight"  # the codebook's parameter name (also its EMA shadow's and optimizer key)


def _set_rows(t: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor) -> None:
    """``t[idx] = rows`` for a plain tensor or an FSDP-sharded one (a collective there: every process calls it)."""
    if is_dtensor(t):
        whole = full_tensor(t.detach()).clone()
        whole[idx.to(whole.device)] = rows.to(whole.device, whole.dtype)
        copy_whole_(t, whole)  # every process computed the same whole tensor
    else:
        t[idx.to(t.device)] = rows.to(t.device, t.dtype)


class DeadCodeRestarter:
    """Tracks when each code was last chosen (by any process) and restarts the ones unused for ``after`` steps."""

    def __init__(self, codebook_size: int, after: int, seed: int) -> None:
        if after < 1:
            raise ValueError(f"restart_dead_codes must be >= 1 step (0 turns it off), got {after}")
        self.after = after
        self.seed = seed
        self.last_used = torch.zeros(codebook_size, dtype=torch.long)  # (K,) step count when last chosen
        self.total = 0  # codes restarted since step 0
        self.interval = 0  # ... since the last log

    @torch.no_grad()
    def step(
        self,
        acc: Any,
        step: int,
        counts: torch.Tensor,
        latents: torch.Tensor,
        params: dict[str, torch.nn.Parameter],
        optimizer: torch.optim.Optimizer,
        ema_shadow: dict[str, torch.Tensor],
    ) -> int:
        """After optimizer step ``step`` (0-based) and the EMA update: record this step's usage ``counts`` (K,) of this
        process and restart dead codes from ``latents`` (n, C), this process's encoder outputs. Returns how many."""
        done = step + 1
        used = acc.reduce(counts.to(acc.device, torch.float64), "sum").cpu() > 0  # (K,) over the global batch
        self.last_used[used] = done
        dead = torch.nonzero(done - self.last_used >= self.after).flatten()  # (d,) ascending code ids
        if dead.numel() == 0:
            return 0
        pool = acc.gather(latents.float().to(acc.device).contiguous()).cpu()  # (N, C), processes in rank order
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "dead-codes", done))
        if dead.numel() <= pool.shape[0]:
            pick = torch.randperm(pool.shape[0], generator=gen)[: dead.numel()]  # distinct outputs
        else:
            pick = torch.randint(pool.shape[0], (dead.numel(),), generator=gen)
        new = pool[pick]  # (d, C)
        weight = params[WEIGHT]
        _set_rows(weight.data, dead, new)
        _set_rows(ema_shadow[WEIGHT], dead, new)  # the EMA codebook follows at once, not over ~1/(1-decay) steps
        state = optimizer.state.get(weight, {})
        for key in ("exp_avg", "exp_avg_sq"):  # stale Adam moments would push the new code off its output
            if key in state:
                _set_rows(state[key], dead, torch.zeros_like(new))
        self.last_used[dead] = done  # a restarted code gets ``after`` steps to be chosen
        self.total += dead.numel()
        self.interval += dead.numel()
        return int(dead.numel())

    def interval_stats(self) -> dict[str, float]:
        """Restarts since the last log and in all (logged beside codebook usage and entropy)."""
        out = {"codebook_restarts": float(self.interval), "codebook_restarts_total": float(self.total)}
        self.interval = 0
        return out

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps (the running totals live in :meth:`state`)."""
        return {"last_used": self.last_used.clone()}

    def state(self) -> dict[str, int]:
        """Counters for the checkpoint's JSON state."""
        return {"total": self.total, "interval": self.interval}

    def load(self, tensors: dict[str, torch.Tensor], state: dict[str, int]) -> None:
        """Restore what :meth:`state_tensors` and :meth:`state` saved."""
        last = tensors["last_used"]
        if last.shape != self.last_used.shape:
            raise ValueError(f"dead-code record has {last.numel()} codes, the model {self.last_used.numel()}")
        self.last_used.copy_(last)
        self.total, self.interval = int(state["total"]), int(state["interval"])
