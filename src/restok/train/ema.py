"""The exponential moving average of the trained weights (diffusers' schedule), sharded like the parameters under
FSDP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from .distributed import copy_whole_, full_tensors
from .errors import TrainingError

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of the trainable parameters, diffusers' schedule (spec §4.3):
    decay_k = min(decay, (1 + k) / (10 + k)) with k = updates - 1, and the first update copies.

    Under FSDP the shadows are sharded like the parameters (each process averages its own slice);
    :meth:`state_dict` gathers them whole, so it is a collective there.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        # every parameter: a frozen one (a training stage's fixed part) keeps its value; the averages are a whole model
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the average."""
        self.updates += 1
        k = self.updates - 1
        d = 0.0 if k <= 0 else min(self.decay, (1 + k) / (10 + k))
        params = dict(model.named_parameters())
        for n in self.shadow:
            if params[n].requires_grad:  # a frozen parameter's average is itself, exactly
                self.shadow[n].mul_(d).add_(params[n].detach().float(), alpha=1 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Whole shadow tensors on the CPU (for safetensors); every process must call it under FSDP."""
        return {n: t.detach().cpu().contiguous() for n, t in full_tensors(self.shadow).items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore shadows saved by :meth:`state_dict`; names the keys that do not fit."""
        missing, unexpected = sorted(set(self.shadow) - set(state)), sorted(set(state) - set(self.shadow))
        if missing or unexpected:
            raise TrainingError(f"EMA state does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for n, sh in self.shadow.items():
            copy_whole_(sh, state[n])  # every process read the same file
        self.updates = updates

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averages into ``model``'s parameters."""
        params = dict(model.named_parameters())
        for n in self.shadow:
            params[n].copy_(self.shadow[n].to(params[n].dtype))

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """Temporarily use the EMA weights in ``model`` (for grids), then restore the training weights."""
        backup = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.shadow}
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in backup:
                        p.copy_(backup[n])
