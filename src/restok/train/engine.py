"""What both trainers share: the accelerator, optimizer groups, LR schedule, EMA, atomic checkpoints,
signal handling, metric logging.

Determinism: every step reseeds from (seed, step) -- draws that must not depend on how the global batch is
split across processes (nested-dropout lengths, label dropout, crops) use generators keyed on the global
batch position; rank-local noise (dropout layers) is keyed on (seed, step, rank). A resumed run therefore
replays the exact steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import re
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..checkpoint import file_sha256
from ..data import derive_seed
from ..io import fsync_dir
from .config import NO_DECAY_KEYS, OptimConfig, TrainConfig

__all__ = [
    "TrainingError",
    "EMA",
    "param_groups",
    "build_optimizer",
    "warmup_cosine",
    "build_scheduler",
    "CheckpointDir",
    "StopRequest",
    "MetricLogger",
    "make_accelerator",
    "seed_step",
    "shard_model",
    "full_tensor",
    "enable_activation_checkpointing",
]

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")


class TrainingError(RuntimeError):
    """A run that cannot go on (bad data, NaN loss, mismatched resume state); the message says why."""


# ------------------------------------------------------------------------------------------- optimisation
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
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.warmup_steps, total, cfg.lr, cfg.end_lr))


def _is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind an FSDP shard (a collective: every process must call it), else ``t``."""
    return t.full_tensor() if _is_dtensor(t) else t


def copy_whole_(dst: torch.Tensor, whole: torch.Tensor) -> None:
    """``dst.copy_(whole)`` where ``whole`` is the entire tensor and ``dst`` may be an FSDP shard: every process holds the
    same ``whole`` (read from one file, or computed alike), so each takes its own slice without communication."""
    if _is_dtensor(dst):
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


class EMA:
    """Exponential moving average of the trainable parameters, diffusers' schedule (spec §4.3):
    decay_k = min(decay, (1 + k) / (10 + k)) with k = updates - 1, and the first update copies.

    Under FSDP the shadows are sharded like the parameters (each process averages its own slice);
    :meth:`state_dict` gathers them whole, so it is a collective there.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the average."""
        self.updates += 1
        k = self.updates - 1
        d = 0.0 if k <= 0 else min(self.decay, (1 + k) / (10 + k))
        params = dict(model.named_parameters())
        for n in self.shadow:
            self.shadow[n].mul_(d).add_(params[n].detach().float(), alpha=1 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Whole shadow tensors on the CPU (for safetensors); every process must call it under FSDP."""
        return {n: full_tensor(t).detach().cpu().contiguous() for n, t in self.shadow.items()}

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


# ------------------------------------------------------------------------------------------- checkpoints
class CheckpointDir:
    """``RUN/checkpoints/step-<8-digit step>/`` folders, each written under a temporary name and renamed when
    complete (so a crash mid-save leaves the previous ones intact); the newest ``keep`` are kept, and those of
    ``keep_steps`` always. Each holds ``inference_config.json``, the config of the model its EMA weights make
    (what :func:`restok.train.export.export_checkpoint` writes out)."""

    def __init__(self, run: Path, keep: int, keep_steps: tuple[int, ...] = ()) -> None:
        self.root = run / "checkpoints"
        self.keep = keep
        self.keep_steps = frozenset(keep_steps)

    def complete(self) -> list[tuple[int, Path]]:
        """(step, folder) of every complete checkpoint, oldest first."""
        if not self.root.is_dir():
            return []
        out = []
        for d in self.root.iterdir():
            m = CHECKPOINT_RE.match(d.name)
            if m and d.is_dir() and (d / "trainer.pt").exists():
                out.append((int(m.group(1)), d))
        return sorted(out)

    def newest(self) -> tuple[int, Path] | None:
        """The newest complete checkpoint, if any."""
        c = self.complete()
        return c[-1] if c else None

    def find(self, step: int) -> Path:
        """The complete checkpoint of ``step``, or a TrainingError listing the ones there are."""
        for s, d in self.complete():
            if s == step:
                return d
        have = [s for s, _ in self.complete()]
        raise TrainingError(f"{self.root} has no complete checkpoint of step {step}; it has {have or 'none'}")

    def save(
        self, step: int, tensors: dict[str, dict[str, torch.Tensor]], trainer_state: dict[str, Any],
        inference_config: dict[str, Any] | None = None,
    ) -> Path:
        """Write ``<name>.safetensors`` for each tensor dict, ``trainer.pt`` and ``inference_config.json``; then
        rename into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".tmp-step-{step:08d}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, t in tensors.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in t.items()}, str(tmp / f"{name}.safetensors"))
        torch.save(trainer_state, tmp / "trainer.pt")
        if inference_config is not None:
            (tmp / "inference_config.json").write_text(json.dumps(inference_config, indent=2))
        files = {}
        for f in sorted(tmp.iterdir()):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            files[f.name] = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
        # what tells a complete checkpoint from a damaged one (truncated or zeroed files) when resuming
        (tmp / "files.json").write_text(json.dumps(files, indent=2))
        with open(tmp / "files.json", "rb") as fh:
            os.fsync(fh.fileno())
        if final.exists():  # the same step saved again (e.g. final after a periodic save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(self.root)
        for s, old in self.complete()[: -self.keep]:
            if s not in self.keep_steps:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return final

    @staticmethod
    def damage(folder: Path) -> str | None:
        """What is wrong with a checkpoint's files (missing, other size, other SHA-256 than ``files.json`` says), or None."""
        record = folder / "files.json"
        if not record.is_file():
            return None  # written before files.json existed: only loading can tell
        try:
            files = json.loads(record.read_text())
        except (OSError, ValueError) as e:
            return f"files.json unreadable ({e})"
        for name, want in files.items():
            f = folder / name
            if not f.is_file():
                return f"{name} is missing"
            if f.stat().st_size != want["bytes"]:
                return f"{name} has {f.stat().st_size} bytes, {want['bytes']} were written"
            if file_sha256(f) != want["sha256"]:
                return f"{name} does not have the content that was written (SHA-256 differs)"
        return None

    @staticmethod
    def load(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """Tensor dicts and the trainer state of one checkpoint (``weights_only`` unpickling)."""
        problem = CheckpointDir.damage(folder)
        if problem:
            raise TrainingError(f"checkpoint {folder} is damaged: {problem}")
        try:
            tensors = {f.stem: load_file(str(f)) for f in folder.glob("*.safetensors")}
            state = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - SafetensorError, UnpicklingError, EOFError, RuntimeError
            raise TrainingError(f"checkpoint {folder} is damaged: {type(e).__name__}: {e}") from None
        if not isinstance(state, dict) or "step" not in state:
            raise TrainingError(f"checkpoint {folder} is damaged: trainer.pt holds no trainer state")
        return tensors, state

    def load_newest_intact(self) -> tuple[int, Path, dict[str, dict[str, torch.Tensor]], dict[str, Any]] | None:
        """The newest checkpoint that loads, falling back past damaged ones with a warning naming what was wrong."""
        for step, folder in reversed(self.complete()):
            try:
                tensors, state = self.load(folder)
            except TrainingError as e:
                logging.getLogger("restok.train").warning("%s; falling back to an older checkpoint", e)
                continue
            return step, folder, tensors, state
        return None


def rng_state() -> dict[str, Any]:
    """Global RNG states (saved for completeness; every step reseeds them anyway)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------- signals
class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (then it checkpoints and exits)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ------------------------------------------------------------------------------------------- logging
class MetricLogger:
    """``RUN/metrics.jsonl`` (always) plus the accelerator's trackers (TensorBoard / W&B when installed)."""

    def __init__(self, run: Path, accelerator: Any, enabled: bool) -> None:
        self.path = run / "metrics.jsonl"
        self.acc = accelerator
        self.enabled = enabled

    def log(self, step: int, values: dict[str, float]) -> None:
        """Append one record (main process only)."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.acc.trackers:
            self.acc.log(clean, step=step)


def available_trackers(wanted: tuple[str, ...]) -> list[str]:
    """The subset of ``wanted`` whose packages are installed."""
    import importlib.util

    mods = {"tensorboard": "tensorboard", "wandb": "wandb"}
    out = []
    for t in wanted:
        if t not in mods:
            raise TrainingError(f"unknown tracker {t!r}; choose from {sorted(mods)}")
        if importlib.util.find_spec(mods[t]) is not None:
            if t == "wandb" and not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
                continue  # not configured: skip rather than prompt
            out.append(t)
    return out


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
        logging.getLogger("restok.train").warning("distributed=fsdp with one process: nothing to shard, training unsharded")
    return acc
