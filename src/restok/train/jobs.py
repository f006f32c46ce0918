"""The training commands as requests: what ``restok train tokenizer|generator``, ``restok extract-codes`` and
``restok check-codes`` ask for, as keyword-only dataclasses, and one function per request that does the whole job --
the recipe with its overrides, fitted to ``devices`` when asked, the preflight or the run; the code set written or
checked. The command line only fills requests in and prints."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models.resources import Resources
from ..runtime.launch import launch_env
from ..runtime.requests import RequestError
from ..runtime.requests import field as field_name
from .config import TrainConfig, load_train_config
from .errors import TrainingError

__all__ = [
    "TrainRequest",
    "TrainOutcome",
    "run_train",
    "ExtractCodesRequest",
    "run_extract_codes",
    "CheckCodesRequest",
    "run_check_codes",
]


@dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """``restok train tokenizer|generator``: a recipe (name or YAML file) with ``key=value`` overrides, its data (images
    for a tokenizer, a code set for a generator) and run folder, ``init`` (fine-tune: start from that trained model's
    weights and architecture), the run's length and resume, and the checks before a long run (``preflight``;
    ``devices``: fit the recipe's global batch to that many processes)."""

    kind: str
    config: str
    data: str
    out: Path
    overrides: tuple[str, ...] = ()
    eval_data: str | None = None
    init: str | None = None
    max_steps: int | None = None
    stop_at: int | None = None
    resume: bool = False
    preflight: bool = False
    preflight_timeout: float = 60.0
    devices: int | None = None
    memory_per_device: float | None = None
    device: str = "auto"
    progress: bool = True


@dataclass
class TrainOutcome:
    """How a training command ended: the run's result, or the preflight's lines and whether one blocks it."""

    result: Any = None  # a RunResult (restok.train.loop) after a run
    preflight: list[str] = field(default_factory=list)
    blocked: bool = False

    @property
    def main(self) -> bool:
        """Whether this is the process that reports (rank 0 of a launch)."""
        return os.environ.get("RANK", "0") == "0"


def _fitted(cfg: TrainConfig, req: TrainRequest, announce: Callable[[str], None]) -> TrainConfig:
    """The recipe fitted to ``req.devices`` (refused when the launch has another process count); the plan announced
    on the main process."""
    from ..runtime.memory import available_memory
    from .preflight import fit_to_devices

    launched = launch_env().world  # the launcher's variables, checked in their one place
    if "WORLD_SIZE" in os.environ and launched != req.devices:
        raise RequestError(
            f"{field_name('devices')} {req.devices} but the launcher started {launched} processes: give the count it "
            "starts"
        )
    if "WORLD_SIZE" not in os.environ and req.devices > 1:  # type: ignore[operator]
        raise RequestError(
            f"{field_name('devices')} {req.devices} plans a run of {req.devices} processes: launch it so (torchrun "
            f"--nproc-per-node {req.devices} -m restok train ..., or accelerate launch --num_processes {req.devices}); "
            "alone it is one"
        )
    if launched > 1 and not req.memory_per_device:
        # each rank would measure its own free memory and could choose another grad_accum: the collectives would not
        # match
        raise RequestError(
            f"{field_name('devices')} under a launcher needs {field_name('memory_per_device')} GB, so that every rank "
            "fits the recipe the same way"
        )
    res = Resources(req.device)
    memory = int(req.memory_per_device * 1e9) if req.memory_per_device else available_memory(res.device)
    cfg, plan = fit_to_devices(cfg, req.kind, req.data, req.devices, memory)  # type: ignore[arg-type]
    if os.environ.get("RANK", "0") == "0":
        announce(plan)
    return cfg


def run_train(req: TrainRequest, announce: Callable[[str], None] = lambda _m: None) -> TrainOutcome:
    """Load the recipe (name or YAML, then the overrides), fit it to ``devices`` when asked, then the preflight or the
    run; ``announce`` hears the devices plan before the run starts."""
    if req.kind not in ("tokenizer", "generator"):
        raise TrainingError(f"kind must be 'tokenizer' or 'generator', got {req.kind!r}")
    overrides = [*req.overrides, *([f"eval_data={req.eval_data}"] if req.eval_data else [])]
    overrides += [f"init_from={req.init}"] if req.init else []
    cfg = load_train_config(req.config, req.kind, overrides)
    if req.devices:
        cfg = _fitted(cfg, req, announce)
    device = None if req.device == "auto" else req.device
    if req.preflight:
        from .preflight import preflight

        lines, blocked = preflight(cfg, req.kind, req.data, req.out, device, req.preflight_timeout)
        return TrainOutcome(preflight=lines, blocked=blocked)
    from . import train_generator, train_tokenizer

    train = train_tokenizer if req.kind == "tokenizer" else train_generator
    options = dict(max_steps=req.max_steps, stop_at=req.stop_at, resume=req.resume, device=device)
    return TrainOutcome(result=train(cfg, req.data, req.out, progress=req.progress, **options))


# ------------------------------------------------------------------------------------------- code sets
@dataclass(frozen=True, kw_only=True)
class ExtractCodesRequest:
    """``restok extract-codes``: every image of ``data`` (each crop) tokenized into a sharded, resumable code set."""

    tokenizer: str
    data: str
    out: Path
    crop: str = "ten-crop"
    shard_size: int = 10_000
    target_psnr: float | None = None
    batch_size: int = 32
    device: str = "auto"
    progress: bool = True


def run_extract_codes(req: ExtractCodesRequest) -> dict[str, Any] | None:
    """Write the code set (all processes of a torchrun/accelerate job); its ``meta.json`` on the main process (None
    elsewhere)."""
    from .codes import extract_codes

    res = Resources(req.device, progress=req.progress, data=req.data, tokenizer=req.tokenizer)
    return extract_codes(
        res.tokenizer,
        res.source,
        req.out,
        crop=req.crop,
        batch_size=req.batch_size,
        shard_size=req.shard_size,
        processes=res.processes,
        target_psnr=req.target_psnr,
    )


@dataclass(frozen=True, kw_only=True)
class CheckCodesRequest:
    """``restok check-codes``: a code set held against its format and, given its tokenizer (and the source images),
    against what it records, re-encoding ``verify`` images."""

    codes: Path
    tokenizer: str | None = None
    data: str | None = None
    verify: int = 4


def run_check_codes(req: CheckCodesRequest) -> dict[str, Any]:
    """The report of a complete, consistent code set (a CodesError names what is wrong)."""
    from .codes import check_codes

    res = Resources("cpu", data=req.data, tokenizer=req.tokenizer)
    source = res.source if req.data else None  # the data is opened before any model is loaded
    tok = res.tokenizer.eval() if req.tokenizer else None
    return check_codes(req.codes, tok, source, num_verify=req.verify)
