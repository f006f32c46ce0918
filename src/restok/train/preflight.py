"""``restok train ... --preflight``: before a long run, on every rank, what makes multi-node runs fail late -- checked
in seconds, one line per finding, a nonzero exit on a blocker.

* the launcher's world: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE`` as torchrun or Accelerate set them;
* a collective (an all-reduce) that completes within ``timeout`` seconds (a hang is reported, not waited out);
* one ``--out`` for every rank (rank 0 writes a token there; every rank must read it back: a shared filesystem);
* the same data on every rank (sample count and a hash of the sample names and labels);
* the batch arithmetic for the process count (global batch divisible by processes, per-process batch by
  ``grad_accum``, at least one global batch of data) and the data-loader workers;
* free disk under ``--out`` for the checkpoints the recipe keeps (``keep_checkpoints`` + ``keep_steps`` + the one being
  written), and an estimate of memory per device: the training state per parameter (weights, gradients, AdamW moments,
  EMA; sharded under FSDP) plus the activations of the transformer blocks (Korthikanti et al. 2022, s*b*h*(34 +
  5*a*s/h) bytes per layer at 16 bits; twice that in float32) against the device's free memory.

Every rank computes its facts; rank 0 gathers them and prints one line per finding (ranks named).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from ..core.registry import model_classes
from ..runtime.files import write_text
from ..runtime.inputs import read_text_input
from ..runtime.launch import rendezvous
from ..runtime.memory import available_memory, format_bytes
from .config import TrainConfig
from .distributed import make_accelerator
from .families import generator_run, tokenizer_run

__all__ = ["preflight", "activation_bytes", "checkpoint_bytes"]

BLOCKER, WARNING = "blocker", "warning"


def _reads(path: Path, token: str) -> bool:
    """Whether ``path`` is a regular file holding ``token`` (a planted FIFO or link reads as "not shared")."""
    try:
        return read_text_input(path, "preflight token", max_bytes=1024, follow_links=False) == token
    except (OSError, ValueError):
        return False


def _data_facts(kind: str, data: str) -> tuple[int, str]:
    """Sample count and a hash of what the samples are."""
    h = hashlib.sha256()
    if kind == "tokenizer":
        from ..data.sources import open_image_source

        src = open_image_source(data)
        h.update(src.description.encode())
        step = max(1, len(src) // 4096)  # names and labels of evenly spread samples: cheap at 1.28M
        for i in range(0, len(src), step):
            r = src.records[i]
            h.update(f"{r.name}|{r.label}".encode())
        return len(src), h.hexdigest()[:16]
    from ..data.codes import CodesDataset

    ds = CodesDataset(data)
    h.update(repr(sorted(ds.meta.items())).encode())
    return len(ds), h.hexdigest()[:16]


def _model(cfg: TrainConfig, kind: str, data: str) -> tuple[Any, Any]:
    """The model class and config the run will build (:mod:`restok.train.families`; a generator's from its code set)."""
    if kind == "tokenizer":
        return tokenizer_run(cfg)
    from ..data.codes import CodesDataset

    return generator_run(cfg, CodesDataset(data).meta)


def checkpoint_bytes(params: int) -> int:
    """A checkpoint's size: float32 weights, EMA copy and AdamW's two moments."""
    return 16 * params


def activation_bytes(kind: str, mc: Any, per_process_batch: int, grad_accum: int, precision: str) -> int:
    """Activations of the transformer blocks of one micro-batch (Korthikanti et al. 2022, no recomputation)."""
    b = max(1, per_process_batch // max(1, grad_accum))
    scale = 1 if precision in ("bf16", "fp16") else 2
    conv = 0
    if kind == "tokenizer":  # the family says what its transformers and its CNN hold per image
        cls = next(c for c in model_classes("tokenizer") if isinstance(mc, c.config_class))
        layers, conv = cls.activation_shapes(mc)
    else:
        layers = [(mc.num_tokens, mc.dim, mc.n_head, mc.n_layer)]
    attention = sum(scale * s * b * h * (34 + 5 * a * s / h) * n for s, h, a, n in layers)
    return int(attention + scale * 2 * b * conv)


def _collective(acc: Any, timeout: float) -> tuple[bool, float, str | None]:
    """An all-reduce of ones within ``timeout`` s: (it finished with the world size as its sum, seconds, the error it
    raised if it failed rather than hung)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            t = torch.ones(1, device=acc.device)
            out["sum"] = float(acc.reduce(t, "sum"))
        except Exception as e:  # noqa: BLE001 - reported as the reason, not as "did not complete"
            out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    t0 = time.perf_counter()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    return (not th.is_alive() and out.get("sum") == acc.num_processes), time.perf_counter() - t0, out.get("error")


def _launcher(acc: Any) -> list[tuple[str, str]]:
    """What the launcher set, checked against what the process group says."""
    env = {
        k: os.environ.get(k)
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    out = []
    if env["WORLD_SIZE"] is not None and int(env["WORLD_SIZE"]) != acc.num_processes:
        out.append((BLOCKER, f"WORLD_SIZE={env['WORLD_SIZE']} but the process group has {acc.num_processes} processes"))
    if env["RANK"] is not None and int(env["RANK"]) != acc.process_index:
        out.append((BLOCKER, f"RANK={env['RANK']} but the process group says rank {acc.process_index}"))
    if acc.num_processes > 1 and env["LOCAL_RANK"] is None:
        out.append(
            (
                WARNING,
                "LOCAL_RANK is not set: launch with torchrun or accelerate launch so each process gets its own device",
            )
        )
    return out


def _shared_out(acc: Any, run: Path) -> list[tuple[str, str]]:
    """Rank 0 writes a token under ``--out``; every rank reads it back."""
    from accelerate.utils import broadcast_object_list

    token = [uuid.uuid4().hex if acc.is_main_process else None]
    broadcast_object_list(token)
    f = run / f".preflight-{token[0]}"
    if acc.is_main_process:
        write_text(f, token[0])
    acc.wait_for_everyone()
    seen = _reads(f, token[0])
    acc.wait_for_everyone()
    if acc.is_main_process:
        f.unlink(missing_ok=True)
    return (
        []
        if seen
        else [
            (
                BLOCKER,
                f"--out {run} is not the folder rank 0 writes to (not a shared filesystem?): "
                "checkpoints and the final model would be missing on this node",
            )
        ]
    )


def _budget(cfg: TrainConfig, kind: str, data: str, run: Path, acc: Any, n: int) -> list[tuple[str, str]]:
    """Batch arithmetic, disk for the kept checkpoints, memory per device."""
    out, world = [], acc.num_processes
    if cfg.batch_size % world:
        out.append((BLOCKER, f"batch_size {cfg.batch_size} (the global batch) is not divisible by {world} processes"))
    elif (cfg.batch_size // world) % cfg.grad_accum:
        out.append(
            (
                BLOCKER,
                f"the per-process batch {cfg.batch_size // world} is not divisible by grad_accum={cfg.grad_accum}",
            )
        )
    if n < cfg.batch_size:
        out.append((BLOCKER, f"the data has {n} samples, fewer than one global batch of {cfg.batch_size}"))
    cls, mc = _model(cfg, kind, data)
    params = cls.parameter_count(mc)
    keep = cfg.keep_checkpoints + len(cfg.keep_steps) + 1
    need, free = keep * checkpoint_bytes(params), shutil.disk_usage(run).free
    if need > free:
        out.append(
            (
                BLOCKER,
                f"{keep} checkpoints of ~{format_bytes(checkpoint_bytes(params))} need {format_bytes(need)} under "
                f"{run}, {format_bytes(free)} free",
            )
        )
    state = 20 * params // (world if cfg.distributed == "fsdp" else 1)
    act = activation_bytes(kind, mc, cfg.batch_size // world, cfg.grad_accum, cfg.mixed_precision)
    mem = available_memory(acc.device)
    line = (
        f"memory per device: ~{format_bytes(state + act)} ({format_bytes(state)} training state for {params:,} "
        "parameters"
        f"{' sharded' if cfg.distributed == 'fsdp' else ''}, ~{format_bytes(act)} activations at "
        f"{cfg.batch_size // world // cfg.grad_accum or 1} "
        f"images per micro-batch)"
    )
    if mem is not None and state + act > mem:
        out.append(
            (
                BLOCKER,
                f"{line} > {format_bytes(mem)} free on {acc.device}: raise grad_accum, use distributed=fsdp, "
                "grad_checkpointing=true or mixed_precision=bf16",
            )
        )
    else:
        out.append(("info", line + (f", {format_bytes(mem)} free" if mem is not None else "")))
    return out


def preflight(
    cfg: TrainConfig, kind: str, data: str, run: str | Path, device: str | None = None, timeout: float = 60.0
) -> tuple[list[str], bool]:
    """Every check on this rank; on rank 0 the lines of every rank (``[rank r] ...``) and whether any blocks."""
    from accelerate.utils import gather_object

    from ..runtime.processes import resolve_device

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device or "auto")
    rendezvous(dev.type, timeout)  # the processes find each other within the preflight's own time
    acc = make_accelerator(cfg, run, cpu=dev.type == "cpu")
    found = _launcher(acc)
    ok, secs, why = _collective(acc, timeout)
    if not ok:  # a hung or failed collective: say so and leave without waiting for it
        print(
            f"[rank {acc.process_index}] blocker: an all-reduce over {acc.num_processes} processes "
            + (f"failed ({why})" if why else f"did not complete in {timeout:g} s")
            + " (rendezvous address, firewall, "
            "NCCL_SOCKET_IFNAME?)",
            flush=True,
        )
        os._exit(1)
    found.append(("info", f"all-reduce over {acc.num_processes} processes in {secs * 1e3:.0f} ms; device {acc.device}"))
    found += _shared_out(acc, run)
    try:  # a problem on one rank is its finding; every rank still reaches the gathers below
        n, digest = _data_facts(kind, data)
    except Exception as e:  # noqa: BLE001
        n, digest = -1, f"unreadable: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    facts = gather_object([(acc.process_index, n, digest)])
    if len({(c, d) for _, c, d in facts}) > 1 or n < 0:
        found.append(
            (BLOCKER, "ranks see different data: " + ", ".join(f"rank {r}: {c} samples ({d})" for r, c, d in facts))
        )
    else:
        found.append(
            (
                "info",
                f"data: {n} samples (hash {digest}); {cfg.num_workers} loader worker(s) per process, "
                f"{acc.num_processes * max(1, cfg.num_workers)} in all",
            )
        )
        try:
            found += _budget(cfg, kind, data, run, acc, n)
        except Exception as e:  # noqa: BLE001
            found.append((BLOCKER, f"cannot size the run: {type(e).__name__}: {e}"))
    every = gather_object([(acc.process_index, level, text) for level, text in found])
    lines = [f"[rank {r}] {level}: {text}" for r, level, text in sorted(every, key=lambda x: (x[0], x[1] != BLOCKER))]
    blocked = any(level == BLOCKER for _, level, _ in every)
    acc.wait_for_everyone()
    return (lines if acc.is_main_process else []), blocked


def fit_to_devices(cfg: TrainConfig, kind: str, data: str, devices: int, memory: int | None) -> tuple[TrainConfig, str]:
    """The recipe on ``devices`` processes of ``memory`` bytes each: the same global batch (so the same learning rate
    and schedule) as per-device micro-batches x gradient accumulation, the fewest accumulation steps whose training
    state and activations fit; and the line that says so. A ValueError when even one image per micro-batch does not."""
    import dataclasses

    if cfg.batch_size % devices:
        raise ValueError(
            f"the global batch {cfg.batch_size} does not split over {devices} devices; choose a device count that "
            f"divides it (or change batch_size, which changes the recipe)"
        )
    per = cfg.batch_size // devices
    cls, mc = _model(cfg, kind, data)
    state = 20 * cls.parameter_count(mc) // (devices if cfg.distributed == "fsdp" else 1)
    for accum in (a for a in range(1, per + 1) if per % a == 0):
        need = state + activation_bytes(kind, mc, per, accum, cfg.mixed_precision)
        if memory is None or need <= memory:
            fitted = dataclasses.replace(cfg, grad_accum=accum)
            return fitted, (
                f"fitted to {devices} device(s): global batch {cfg.batch_size} = {devices} x {per // accum} per "
                f"micro-batch x {accum} accumulation step(s) (learning rate and schedule unchanged); about "
                f"{format_bytes(need)} per device" + (f" of {format_bytes(memory)}" if memory else "")
            )
    raise ValueError(
        "even one image per micro-batch needs "
        f"~{format_bytes(state + activation_bytes(kind, mc, 1, 1, cfg.mixed_precision))} "
        f"per device, more than {format_bytes(memory or 0)}: use distributed=fsdp, mixed_precision=bf16 or "
        "grad_checkpointing=true, or more memory"
    )
