"""The training loop both trainers run, as named steps: settle the run's length, find or refuse its folder, start the
accelerator and the run's records, resume, train (logging, grids, validation, checkpoints, stop requests), finish
(the final EMA weights). The folder's lock is held for the whole run and released whatever happens."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import StepBatchSampler
from ..runtime.files import make_dir, write_text
from ..runtime.inputs import load_yaml, read_text_input
from ..runtime.locks import FolderLock
from ..runtime.processes import resolve_device
from ..runtime.progress import progress as progress_bar
from .checkpoints import CheckpointDir, rng_state, set_rng_state
from .config import TrainConfig
from .distributed import make_accelerator, seed_step
from .errors import TrainingError
from .monitor import MetricLogger, StopRequest
from .task import Task

__all__ = ["RunResult", "config_differences", "run_training"]

log = logging.getLogger("restok.train")


@dataclass
class RunResult:
    """How a run ended: ``finished`` (final weights written), ``stopped`` (``--stop-at``) or ``interrupted``."""

    status: str
    step: int
    checkpoint: Path | None
    final: Path | None
    signal: int | None = None


def config_differences(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Top-level settings of two run configs (``RUN/config.yaml`` dicts) that differ, ``ignore`` aside."""
    return sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))


def _write_config(run: Path, cfg: TrainConfig, resume: bool, data: str) -> None:
    """``RUN/config.yaml`` with the data it trains on; a resumed run must use the config and data it started with
    (except its length)."""
    import yaml

    path = run / "config.yaml"
    new = {**cfg.to_dict(), "data": data}
    if resume and path.exists():
        old = load_yaml(read_text_input(path, "run config"), str(path))
        diff = config_differences(old, new, ignore=("max_steps", "num_workers"))
        if diff:
            raise TrainingError(
                f"--resume with a different config than the run was started with: {diff} differ "
                f"(see {path}); resume with the same config or start a new run folder"
            )
    write_text(path, yaml.safe_dump(new, sort_keys=False))


# ------------------------------------------------------------------------------------------- the steps of a run
def _settle_length(cfg: TrainConfig, max_steps: int | None, stop_at: int | None) -> tuple[TrainConfig, int]:
    """The config with ``--max-steps`` applied (the run's length and its LR schedule's), and the step to end at."""
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise TrainingError(f"--max-steps must be an integer >= 1, got {max_steps!r}")
        cfg = dataclasses.replace(cfg, max_steps=max_steps)
    if stop_at is not None and stop_at < 1:
        raise TrainingError(f"--stop-at must be >= 1, got {stop_at}")
    return cfg, cfg.max_steps if stop_at is None else min(stop_at, cfg.max_steps)


def _start(task: Task, cfg: TrainConfig, run: Path, acc: Any, resume: bool) -> None:
    """The run's records (``config.yaml``, trackers; main process) and the task's model, optimizer and data."""
    if acc.is_main_process:
        _write_config(run, cfg, resume, task.data_identity())
        if acc.trackers is not None and acc.log_with:
            flat = {k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in cfg.to_dict().items()}
            make_dir(run / "logs" / "restok", inside=run)  # where TensorBoard writes: never through a planted link
            acc.init_trackers("restok", config=flat)
    task.build(acc)


def _resume(task: Task, ckpts: CheckpointDir, total: int) -> tuple[int, Path | None]:
    """Restore the newest intact checkpoint (falling back past damaged ones); returns (its step, its folder)."""
    newest = ckpts.load_newest_intact()
    if newest is None:
        if ckpts.complete():
            raise TrainingError(
                f"every checkpoint in {ckpts.root} is damaged (see the warnings); nothing to resume from"
            )
        log.warning("--resume: no complete checkpoint in %s, starting from step 0", ckpts.root.parent)
        return 0, None
    _, folder, tensors, state = newest
    if state.get("max_steps") != total:
        raise TrainingError(
            f"checkpoint {folder} was written by a run with --max-steps {state.get('max_steps')}, "
            f"not {total}: the LR schedule would differ; resume with the same --max-steps"
        )
    task.load_checkpoint(tensors, state)
    set_rng_state(state["rng"])
    log.info("resumed from %s (step %d)", folder, int(state["step"]))
    before, now_ = state.get("processes"), task.acc.num_processes
    if before is not None and before != now_:
        # What carries over exactly and what does not (docs: Scale out, "Resume on another number of processes").
        log.warning(
            "resuming a run checkpointed on %d process(es) on %d: the same global batches in the same order and "
            "the same optimizer, scheduler and EMA state; per-process random draws and the rounding of the "
            "gradient reduction differ, so the rest of the run is equivalent to, not bitwise equal to, an "
            "uninterrupted one",
            before,
            now_,
        )
    return int(state["step"]), folder


def _save(task: Task, ckpts: CheckpointDir, acc: Any, step: int, total: int) -> Path | None:
    """Main process writes the checkpoint; everyone waits so no process races ahead of a save."""
    tensors = task.checkpoint_tensors()  # collective under FSDP: every process calls it
    task_state = task.checkpoint_state()  # likewise
    path = None
    if acc.is_main_process:
        state = {"step": step, "max_steps": total, "rng": rng_state(), **task_state}
        path = ckpts.save(step, tensors, state, task.inference_config())
    acc.wait_for_everyone()
    return path


class _Interval:
    """What the log of every ``log_every`` steps records: the mean of the step logs over processes, the task's interval
    statistics, steps per second and the unreadable files skipped so far."""

    def __init__(self, acc: Any, logger: MetricLogger) -> None:
        self.acc, self.logger = acc, logger
        self.skipped, self.steps, self.t = 0, 0, time.perf_counter()

    def log(self, task: Task, done: int, logs: dict[str, float]) -> dict[str, float]:
        keys = sorted(logs)
        vals = self.acc.reduce(
            torch.tensor([logs[k] for k in keys], device=self.acc.device, dtype=torch.float64), "mean"
        )
        record = {**dict(zip(keys, vals.tolist())), **task.interval_stats()}
        now = time.perf_counter()
        record.update(steps_per_sec=self.steps / max(now - self.t, 1e-9), skipped_files=float(self.skipped))
        self.t, self.steps = now, 0
        self.logger.log(done, record)
        return record


def _after_step(task: Task, cfg: TrainConfig, run: Path, logger: MetricLogger, done: int) -> None:
    """Grids and validation at their intervals (every process: gathering sharded weights is a collective)."""
    if done % cfg.image_every == 0:
        make_dir(run / "images", inside=run)  # a link planted there never receives the grids
        task.write_images(run / "images" / f"step-{done:08d}.png", done)
    if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.max_steps):
        scores = task.validate(done)
        if scores:
            logger.log(done, scores)
            log.info("validation at step %d: %s", done, ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))


def _train(
    task: Task,
    cfg: TrainConfig,
    run: Path,
    acc: Any,
    ckpts: CheckpointDir,
    start: int,
    end: int,
    saved: Path | None,
    show: bool,
) -> RunResult:
    """Steps ``start .. end-1`` of the step-keyed data stream; a stop request checkpoints and ends the run there."""
    sampler = StepBatchSampler(
        len(task.dataset), cfg.batch_size, acc.process_index, acc.num_processes, cfg.seed, start, end
    )
    loader = torch.utils.data.DataLoader(
        task.dataset,
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=task.collate,
        persistent_workers=False,
    )
    logger = MetricLogger(run, acc, acc.is_main_process)
    interval = _Interval(acc, logger)
    bar = progress_bar(
        None, f"train {cfg.kind}", total=cfg.max_steps, enabled=show and acc.is_main_process, unit="step"
    )
    bar.update(start)
    with StopRequest() as stop:
        for step, batch in zip(range(start, end), loader):
            seed_step(cfg.seed, step, acc.process_index)
            interval.skipped += len(batch["skipped"])
            for name in batch["skipped"]:
                log.warning("skipped unreadable file: %s", name)
            logs = task.train_step(batch, step)
            done = step + 1
            interval.steps += 1
            bar.update(1)
            if done % cfg.log_every == 0 or done == end:
                record = interval.log(task, done, logs)
                bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "lr") if k in record})
            _after_step(task, cfg, run, logger, done)
            if done % cfg.save_every == 0 or done == end or stop.signal is not None:
                saved = _save(task, ckpts, acc, done, cfg.max_steps)
            if stop.signal is not None:
                bar.close()
                return RunResult("interrupted", done, saved, None, stop.signal)
    bar.close()
    return RunResult("stopped", end, saved, None)


def run_training(
    make_task: Callable[[TrainConfig], Task],
    cfg: TrainConfig,
    run: str | Path,
    max_steps: int | None = None,
    stop_at: int | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Train the task ``make_task`` builds for the run's final config into the run folder ``run``; see ``restok train
    --help`` for the options. ``device``: as ``--device`` (None: auto)."""
    cfg, end = _settle_length(cfg, max_steps, stop_at)
    task = make_task(cfg)
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    ckpts = CheckpointDir(run, cfg.keep_checkpoints, cfg.keep_steps)
    if not resume and ckpts.newest() is not None:
        raise TrainingError(
            f"{run} already holds checkpoints; pass --resume to continue it, or choose a new run folder"
        )
    acc = make_accelerator(cfg, run, cpu=resolve_device(device or "auto").type == "cpu")
    lock = FolderLock(run, f"restok train {cfg.kind}") if acc.is_main_process else None  # one run per folder
    try:
        _start(task, cfg, run, acc, resume)
        start, saved = _resume(task, ckpts, cfg.max_steps) if resume else (0, None)
        result = _train(
            task, cfg, run, acc, ckpts, start, max(end, start), saved, progress
        )  # resuming past the end trains nothing
        if result.status != "interrupted" and result.step >= cfg.max_steps:
            task.export_final(run / "final")  # every process (collective under FSDP); the main one writes
            result = RunResult("finished", result.step, result.checkpoint, run / "final")
            acc.wait_for_everyone()
        acc.end_training()
        return result
    finally:
        if lock is not None:
            lock.release()
