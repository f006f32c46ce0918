"""Running one training on many processes: the Accelerate accelerator (launch, devices, mixed precision, DDP), FSDP2
sharding and the helpers for its sharded tensors, activation checkpointing, and per-step reseeding.

Determinism: every step reseeds from (seed, step) -- draws that must not depend on how the global batch is split
across processes (nested-dropout lengths, label dropout, crops) use generators keyed on the global batch position;
rank-local noise (dropout layers) is keyed on (seed, step, rank). A resumed run therefore replays the exact steps an
uninterrupted run would have taken.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..runtime.launch import rendezvous
from ..runtime.seeds import derive_seed
from .config import TrainConfig
from .errors import TrainingError
from .monitor import available_trackers

__all__ = [
    "full_tensor",
    "full_tensors",
    "copy_whole_",
    "is_dtensor",
    "shard_model",
    "enable_activation_checkpointing",
    "seed_step",
    "make_accelerator",
]


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is an FSDP2 shard (a DTensor)."""
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind an FSDP shard (a collective: every process must call it), else ``t``."""
    return t.full_tensor() if is_dtensor(t) else t


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The whole tensors behind a dict of FSDP shards (and plain tensors, returned as they are), in its order: one
    all-gather per dtype for all of them instead of one collective per tensor (every process must call it)."""
    from torch.distributed.tensor import Shard

    shards = {n: t for n, t in tensors.items() if is_dtensor(t)}
    if not shards:
        return dict(tensors)
    mesh = next(iter(shards.values())).device_mesh
    world, rank = mesh.size(), mesh.get_local_rank()
    # FSDP2 shards dim 0 as torch.chunk does: ranks take ceil(n / world) rows in turn, the last ones fewer or none
    rows = {n: [len(c) for c in torch.arange(t.shape[0]).chunk(world)] + [0] * world for n, t in shards.items()}
    # (decided alike on every process: the collectives below must be the same everywhere)
    batched = {n: t for n, t in shards.items() if t.device_mesh == mesh and tuple(t.placements) == (Shard(0),)}
    out = {n: t.full_tensor() for n, t in shards.items() if n not in batched}  # another layout: gathered alone
    by_dtype: dict[torch.dtype, list[str]] = {}
    for n, t in batched.items():
        by_dtype.setdefault(t.dtype, []).append(n)
    for names in by_dtype.values():
        # each process's slices, each padded to the first rank's row count, end to end: equal sizes on every process
        inner = {n: math.prod(batched[n].shape[1:]) for n in names}
        local = [batched[n].to_local().detach().reshape(-1) for n in names]
        for n, x in zip(names, local):
            if x.numel() != rows[n][rank] * inner[n]:
                raise TrainingError(f"{n}: this process holds {tuple(batched[n].to_local().shape)}, not a dim-0 chunk")
        padded = [torch.nn.functional.pad(x, (0, rows[n][0] * inner[n] - x.numel())) for n, x in zip(names, local)]
        mine = torch.cat(padded)
        gathered = [torch.empty_like(mine) for _ in range(world)]
        torch.distributed.all_gather(gathered, mine, group=mesh.get_group())
        offset = 0
        for n in names:
            parts = [g[offset : offset + rows[n][r] * inner[n]] for r, g in enumerate(gathered)]
            out[n] = torch.cat(parts).reshape(batched[n].shape)
            offset += rows[n][0] * inner[n]
    return {n: out.get(n, t) for n, t in tensors.items()}


def copy_whole_(dst: torch.Tensor, whole: torch.Tensor) -> None:
    """``dst.copy_(whole)`` where ``whole`` is the entire tensor and ``dst`` may be an FSDP shard: every process holds
    the same ``whole`` (read from one file, or computed alike), so each takes its own slice without communication."""
    if is_dtensor(dst):
        from torch.distributed.tensor import distribute_tensor

        whole = distribute_tensor(whole.to(dst.device, dst.dtype), dst.device_mesh, dst.placements, src_data_rank=None)
    dst.copy_(whole)


def shard_model(model: nn.Module, block_types: tuple[type, ...]) -> nn.Module:
    """Shard ``model`` across the processes with FSDP2 (``fully_shard``): one unit per block, one for the rest.

    Parameters become DTensors holding this process's slice; names (FQNs) are unchanged, so param groups,
    the EMA and checkpoints address them as before. Works on CPU (gloo) and GPU (NCCL).
    """
    from torch.distributed.fsdp import fully_shard

    for m in model.modules():
        if isinstance(m, block_types):
            fully_shard(m)
    fully_shard(model)
    return model


def _checkpointed(forward: Any, *args: Any, **kwargs: Any) -> Any:
    if torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def enable_activation_checkpointing(model: nn.Module, block_types: tuple[type, ...]) -> int:
    """Recompute each transformer block's activations in the backward pass; returns how many blocks."""
    n = 0
    for m in model.modules():
        if isinstance(m, block_types):
            m.forward = functools.partial(_checkpointed, m.forward)  # type: ignore[method-assign]
            n += 1
    return n


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed every global RNG for this (step, rank): dropout and other rank-local noise."""
    s = derive_seed(seed, "step", step, "rank", rank)
    torch.manual_seed(s)
    random.seed(s)


def make_accelerator(cfg: TrainConfig, run: Path, cpu: bool) -> Any:
    """An ``accelerate.Accelerator`` for this run: launch, devices, mixed precision, DDP and logging.

    With ``distributed=fsdp`` the trainers shard the model themselves with PyTorch's FSDP2 (:func:`shard_model`),
    which, unlike Accelerate's FSDP plugin, also runs on CPU processes; Accelerate still prepares the optimizer.
    """
    try:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs
    except ImportError:
        raise TrainingError("training needs Hugging Face Accelerate: pip install 'restok[train]'") from None
    trackers = available_trackers(cfg.trackers)
    # the launcher's variables checked, and the processes joined within the start-up timeout, before Accelerate
    rendezvous("cpu" if cpu or not torch.cuda.is_available() else "cuda")

    def build() -> Any:
        return Accelerator(
            mixed_precision=cfg.mixed_precision,
            cpu=cpu,
            log_with=trackers or None,
            project_dir=str(run / "logs"),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        )

    try:
        acc = build()
    except ValueError as e:
        if "already been initialized" not in str(e):
            raise
        # A second run in the same Python process with another precision/device: Accelerate keeps a
        # process-wide singleton, so drop its per-run part (the distributed set-up stays) and build again.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        acc = build()
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP:
        raise TrainingError(
            "Accelerate was launched with its FSDP plugin; restok shards the model itself: launch without the FSDP "
            "settings (plain multi-GPU/CPU) and pass distributed=fsdp"
        )
    if cfg.mixed_precision == "fp16" and acc.scaler is None and not acc.native_amp:
        # Accelerate keeps fp16 for accelerators: on a CPU it quietly trains in fp32 (no autocast, no scaler).
        logging.getLogger("restok.train").warning(
            "mixed_precision=fp16 needs a GPU; on %s Accelerate trains in fp32 (use bf16 for mixed precision on CPU)",
            acc.device.type,
        )
    if acc.device.type == "cuda":  # the official scripts' enable_tf32; recorded as cfg.tf32 in config.yaml
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    if cfg.distributed == "fsdp" and acc.num_processes == 1:
        logging.getLogger("restok.train").warning(
            "distributed=fsdp with one process: nothing to shard, training unsharded"
        )
    return acc
