"""The optimiser of both trainers (spec §2.4, §3.2): AdamW over the official weight-decay groups, and the LR schedule
(linear warm-up, then cosine to the end rate)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from .config import OptimConfig

__all__ = ["NO_DECAY_KEYS", "param_groups", "build_optimizer", "warmup_cosine", "build_scheduler"]

# Parameters whose names contain any of these get no weight decay (the official exclusion list).
NO_DECAY_KEYS = (
    "ln",
    "bias",
    "latent_tokens",
    "mask_token",
    "embedding",
    "norm",
    "gamma",
    "embed",
    "mask_latent_token",
    "rope",
    "freqs_cis",
)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay only >=2-D weights whose names contain none of the official exclusions."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim >= 2 and not any(k in name for k in NO_DECAY_KEYS):
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(params: list[dict[str, Any]] | list[nn.Parameter], cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with the config's lr and betas: the fused kernel when ``cfg.fused``, else the per-tensor loop
    (never ``foreach``, whose grouping differs between backends)."""
    kind = {"fused": True} if cfg.fused else {"foreach": False}
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **kind)


def warmup_cosine(step: int, warmup: int, total: int, base: float, end: float) -> float:
    """LR multiplier: linear from 0 over ``warmup`` steps, then cosine from ``base`` to ``end`` at ``total``."""
    if warmup > 0 and step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return (end + 0.5 * (base - end) * (1 + math.cos(math.pi * progress))) / base


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over :func:`warmup_cosine`; stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, cfg.warmup_steps, total, cfg.lr, cfg.end_lr)
    )
