"""Classifier-free guidance: the schedules of the guidance scale over the model calls (a registry of small pure
functions), and the one function that runs the conditional and unconditional passes and combines them.

Axes: B batch, n positions of one step, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["OFFICIAL_CFG_OFFSET", "CFG_SCHEDULES", "cfg_value", "cfg_values", "guided_logits", "forward_with_cfg"]

# The official sampler never uses a guidance scale of exactly 1 where a schedule lowers it: `step` uses
# 1 + 1e-4 before its start and `linear` adds 1e-4 everywhere. We keep the offset so that the released
# weights sample the same tokens; it changes logits by 1e-4 of the (cond - uncond) gap.
OFFICIAL_CFG_OFFSET = 1e-4


def _constant(ratio: float, scale: float, start: float) -> float:
    """The full scale at every step."""
    return scale


def _step(ratio: float, scale: float, start: float) -> float:
    """Full scale from ``ratio >= start`` on, (almost) 1 before (the released recipe: 3.75 from 0.25)."""
    if scale == 1.0 or ratio >= start:
        return scale
    return 1.0 + OFFICIAL_CFG_OFFSET


def _linear(ratio: float, scale: float, start: float) -> float:
    """Linear ramp from 1 at the first call to ``scale`` at the last."""
    return 1.0 + (scale - 1.0) * ratio + OFFICIAL_CFG_OFFSET


CFG_SCHEDULES: dict[str, Callable[[float, float, float], float]] = {
    "constant": _constant,
    "step": _step,
    "linear": _linear,
}


def cfg_value(schedule: str, step: int, num_steps: int, scale: float, start: float = 0.0) -> float:
    """Guidance scale of model call ``step`` out of ``num_steps``; the call's ratio is ``step / (num_steps - 1)``."""
    if schedule not in CFG_SCHEDULES:
        raise ValueError(f"unknown cfg_schedule {schedule!r}; choose one of {sorted(CFG_SCHEDULES)}")
    if not 0 <= step < num_steps:
        raise ValueError(f"step {step} out of range for {num_steps} steps")
    ratio = step / (num_steps - 1) if num_steps > 1 else 1.0
    return CFG_SCHEDULES[schedule](ratio, float(scale), float(start))


def cfg_values(schedule: str, num_steps: int, scale: float, start: float = 0.0) -> list[float]:
    """Guidance scale of every model call, e.g. for 9 HAR steps."""
    return [cfg_value(schedule, s, num_steps, scale, start) for s in range(num_steps)]


def guided_logits(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on a batch ``[cond; uncond]`` (2B, ...) -> (B, ...): u + (c - u) * scale."""
    cond, uncond = logits.chunk(2, dim=0)  # (B, ...) each
    return uncond + (cond - uncond) * scale


def forward_with_cfg(
    step: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor, scale: float | None
) -> torch.Tensor:
    """One model call for B sequences ``tokens`` (B, L) -> logits (B, n, V) (DiT's ``forward_with_cfg``).

    Without guidance (``scale`` None) ``step`` runs on the B sequences. With it, ``step`` runs once on the doubled
    batch ``[tokens; tokens]`` (2B, L) -- its class embeddings are ``[cond; null]``, fixed for the whole sampling --
    and the two halves are combined as ``u + (c - u) * scale``: both branches always see the same tokens.
    """
    if scale is None:
        return step(tokens)  # (B, n, V)
    return guided_logits(step(torch.cat([tokens, tokens])), scale)  # (2B, n, V) -> (B, n, V)
