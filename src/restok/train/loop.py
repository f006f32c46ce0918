"""The training loop both trainers run: resume, data stream, logging, grids, checkpoints, signals, final."""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch

from ..checkpoint import CheckpointError, check_state_dict
from ..data import StepBatchSampler
from ..io import write_text
from ..lock import FolderLock
from .config import TrainConfig
from .engine import CheckpointDir, MetricLogger, StopRequest, TrainingError, make_accelerator, rng_state, seed_step, set_rng_state

__all__ = ["Task", "ModelTask", "RunResult", "load_initial_weights", "run_training"]

log = logging.getLogger("restok.train")


class Task(Protocol):
    """What a trainer plugs into :func:`run_training`."""

    dataset: torch.utils.data.Dataset

    def build(self, acc: Any) -> None: ...
    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]: ...
    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, float]: ...
    def interval_stats(self) -> dict[str, float]: ...
    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]: ...
    def checkpoint_state(self) -> dict[str, Any]: ...
    def load_checkpoint(self, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None: ...
    def write_images(self, path: Path, step: int) -> None: ...
    def data_identity(self) -> str: ...
    def validate(self, step: int) -> dict[str, float]: ...
    def inference_config(self) -> dict[str, Any]: ...
    def export_final(self, path: Path) -> None: ...


def _training_only(model: torch.nn.Module) -> set[str]:
    """State-dict keys of the training-only heads (those that ``inference_config`` leaves out; none for generators)."""
    if not hasattr(model, "inference_config"):
        return set()
    with torch.device("meta"):  # the skeleton's key names only, no memory
        return set(model.state_dict()) - set(type(model)(model.inference_config()).state_dict())


def load_initial_weights(model: torch.nn.Module, source: str) -> list[str]:
    """Copy a trained model's weights into ``model`` (``init_from``: fine-tuning). Every parameter must exist in the
    source with the same shape, except training-only heads (a tokenizer's alignment heads): the model's keep their
    fresh initialisation if the source lacks them (their keys are returned), the source's are ignored if the model
    has none. Settings that change no shape (dropout, nested dropout, loss weights) are the run's own."""
    try:
        src_model = type(model).from_pretrained(source)  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001 - any failure to load means the setting cannot be honoured
        raise TrainingError(f"init_from={source!r} cannot be loaded as a {type(model).__name__}: {e}") from e
    own = model.state_dict()
    fresh = sorted(_training_only(model) - set(src_model.state_dict()))
    try:  # the package's one key/shape check (from_pretrained's), against the model less its fresh heads
        tensors, _ = check_state_dict({k: v for k, v in own.items() if k not in fresh}, src_model.state_dict(),
                                      tuple(_training_only(src_model)), source, f"this run's {type(model).__name__}")
    except CheckpointError as e:
        raise TrainingError(f"init_from={source!r} does not fit this run's model: {e}\n"
                            "give the run the source's architecture (model / model_overrides)") from e
    model.load_state_dict(tensors, strict=False)
    return fresh


class ModelTask:
    """Shared part of both trainers: model (``self.model`` prepared, ``self.raw`` unwrapped), EMA, optimizer
    and scheduler, saved to and restored from checkpoints.

    Under ``distributed=fsdp`` with several processes the model is sharded with FSDP2 (``self.fsdp``); then
    gathering weights or optimizer states is a collective, so the loop calls the checkpoint, image and export
    methods on every process and only the main process writes.
    """

    fsdp: bool = False

    def prepare_model(self, acc: Any, model: torch.nn.Module, block_types: tuple[type, ...]) -> None:
        """Wrap ``model`` for the run (DDP through Accelerate, or FSDP2 shards), then build EMA and optimizer; with
        ``init_from`` the weights are first those of that trained model (so the EMA and every shard start there)."""
        from .engine import EMA, build_optimizer, param_groups, shard_model

        cfg = self.cfg  # type: ignore[attr-defined]
        self.acc = acc
        if cfg.init_from:
            fresh = load_initial_weights(model, cfg.init_from)
            log.info("init_from=%s: weights loaded%s", cfg.init_from,
                     f"; freshly initialised (the source has none): {', '.join(fresh)}" if fresh else "")
        self.fsdp = cfg.distributed == "fsdp" and acc.num_processes > 1
        if self.fsdp:
            model = shard_model(model.to(acc.device), block_types)
            log.info("distributed=fsdp: model sharded over %d processes (FSDP2)", acc.num_processes)
            self.ema = EMA(model, cfg.ema_decay)  # shards of the (identical) initial weights
            self.opt = acc.prepare(build_optimizer(param_groups(model, cfg.optimizer.weight_decay), cfg.optimizer))
            self.model = self.raw = model
        else:
            self.ema = EMA(model, cfg.ema_decay)
            opt = build_optimizer(param_groups(model, cfg.optimizer.weight_decay), cfg.optimizer)
            self.model, self.opt = acc.prepare(model, opt)
            self.raw = acc.unwrap_model(self.model)

    @contextmanager
    def grad_sync(self, module: torch.nn.Module, sync: bool) -> Iterator[None]:
        """Gradient accumulation: skip the all-reduce (DDP) or reduce-scatter (FSDP) on all but the last micro-batch."""
        if sync:
            yield
        elif self.fsdp and hasattr(module, "set_requires_gradient_sync"):
            module.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                module.set_requires_gradient_sync(True)
        else:
            with self.acc.no_sync(module):
                yield

    def _torch_optimizer(self) -> torch.optim.Optimizer:
        return getattr(self.opt, "optimizer", self.opt)

    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """Model and EMA tensors (whole, on the main process; a collective under FSDP)."""
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            model = get_model_state_dict(self.raw, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        else:
            model = self.acc.get_state_dict(self.model)
        return {"model": model, "ema": self.ema.state_dict()}

    def checkpoint_state(self) -> dict[str, Any]:
        """Optimizer/scheduler states and the EMA's update count (a collective under FSDP)."""
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            opt = get_optimizer_state_dict(
                self.raw, self._torch_optimizer(), options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        else:
            opt = self.opt.state_dict()
        return {"optimizer": opt, "optimizer_layout": "fsdp-full" if self.fsdp else "torch",
                "scheduler": self.sched.state_dict(), "ema_updates": self.ema.updates}

    def load_checkpoint(self, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None:
        """Restore what the two methods above saved (every process reads the same files)."""
        layout = state.get("optimizer_layout", "torch")
        if layout != ("fsdp-full" if self.fsdp else "torch"):
            raise TrainingError(
                f"checkpoint optimizer state was written by a {'FSDP' if layout == 'fsdp-full' else 'DDP'} run; "
                f"resume it with the same distributed setting"
            )
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

            want = {k for k in self.raw.state_dict()}
            have = set(tensors["model"])
            if want != have:
                raise TrainingError(f"checkpoint model does not fit: missing {sorted(want - have)[:5]}, unexpected {sorted(have - want)[:5]}")
            opts = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.raw, tensors["model"], options=opts)
            set_optimizer_state_dict(self.raw, self._torch_optimizer(), state["optimizer"], options=opts)
        else:
            missing, unexpected = self.raw.load_state_dict(tensors["model"], strict=False)
            if missing or unexpected:
                raise TrainingError(f"checkpoint model does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
            self.opt.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(tensors["ema"], state["ema_updates"])
        self.sched.load_state_dict(state["scheduler"])

    def validate(self, step: int) -> dict[str, float]:
        """Held-out metrics of the EMA weights (every process calls it; the main one returns them)."""
        return {}

    def export_final(self, path: Path) -> None:
        """EMA weights as an inference model in this package's format (every process calls it, as gathering the
        shadows is a collective under FSDP; the main one writes)."""
        from ..checkpoint import Provenance
        from .export import inference_model

        shadow = self.ema.state_dict()
        if not self.acc.is_main_process:
            return
        model = inference_model(self.inference_config(), shadow)  # type: ignore[attr-defined] # each trainer's own
        cfg = self.cfg  # type: ignore[attr-defined]
        card = {"training": {"run": path.parent.name, "kind": cfg.kind, "steps": cfg.max_steps, "config": cfg.to_dict()}}
        model.provenance = Provenance(source=f"EMA weights of the run {path.parent.name}", layout="trained", card=card)
        model.save_pretrained(path)

    def with_ema_model(self, build: Any, draw: Any) -> None:
        """Call ``draw(model)`` on the main process with an eval model holding the EMA weights (for image grids).

        DDP: the training model with the averages swapped in, then restored. FSDP: the training model cannot run on
        one process alone, so every process joins in gathering the weights into an unsharded copy made by
        ``build()`` (with the global RNG untouched), and the main process draws with it.
        """
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            full = get_model_state_dict(self.raw, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            shadow = self.ema.state_dict()
            if not self.acc.is_main_process:
                return
            with torch.random.fork_rng(devices=[]):
                model = build()
            keys = model.state_dict().keys()
            model.load_state_dict({k: v for k, v in {**full, **shadow}.items() if k in keys}, strict=False)
            draw(model.to(self.acc.device).eval())
        elif self.acc.is_main_process:
            was_training = self.raw.training
            self.raw.eval()
            with self.ema.swapped_in(self.raw):
                draw(self.raw)
            self.raw.train(was_training)


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
        old = yaml.safe_load(path.read_text())
        diff = config_differences(old, new, ignore=("max_steps", "num_workers"))
        if diff:
            raise TrainingError(
                f"--resume with a different config than the run was started with: {diff} differ "
                f"(see {path}); resume with the same config or start a new run folder"
            )
    write_text(path, yaml.safe_dump(new, sort_keys=False))


def run_training(
    task: Task,
    cfg: TrainConfig,
    run: str | Path,
    max_steps: int | None = None,
    stop_at: int | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``task`` into the run folder ``run``; see ``restok train --help`` for the options."""
    from tqdm.auto import tqdm

    run = Path(run)
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise TrainingError(f"--max-steps must be an integer >= 1, got {max_steps!r}")
        cfg.max_steps = max_steps
    total = cfg.max_steps
    end = total if stop_at is None else min(stop_at, total)
    if stop_at is not None and stop_at < 1:
        raise TrainingError(f"--stop-at must be >= 1, got {stop_at}")
    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    run.mkdir(parents=True, exist_ok=True)
    ckpts = CheckpointDir(run, cfg.keep_checkpoints, cfg.keep_steps)
    if not resume and ckpts.newest() is not None:
        raise TrainingError(f"{run} already holds checkpoints; pass --resume to continue it, or choose a new run folder")
    acc = make_accelerator(cfg, run, cpu)
    main = acc.is_main_process
    lock = FolderLock(run, f"restok train {cfg.kind}") if main else None  # one run per folder
    if main:
        _write_config(run, cfg, resume, task.data_identity())
        if acc.trackers is not None and acc.log_with:
            flat = {k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in cfg.to_dict().items()}
            acc.init_trackers("restok", config=flat)
    task.build(acc)
    start = 0
    saved: Path | None = None
    if resume:
        newest = ckpts.load_newest_intact()
        if newest is None:
            if ckpts.complete():
                raise TrainingError(f"every checkpoint in {ckpts.root} is damaged (see the warnings); nothing to resume from")
            log.warning("--resume: no complete checkpoint in %s, starting from step 0", run)
        else:
            _, folder, tensors, state = newest
            if state.get("max_steps") != total:
                raise TrainingError(
                    f"checkpoint {folder} was written by a run with --max-steps {state.get('max_steps')}, "
                    f"not {total}: the LR schedule would differ; resume with the same --max-steps"
                )
            task.load_checkpoint(tensors, state)
            set_rng_state(state["rng"])
            start, saved = int(state["step"]), folder
            log.info("resumed from %s (step %d)", folder, start)
    end = max(end, start)  # resuming past --stop-at (or a finished run) trains nothing

    sampler = StepBatchSampler(len(task.dataset), cfg.batch_size, acc.process_index, acc.num_processes, cfg.seed, start, end)
    loader = torch.utils.data.DataLoader(
        task.dataset, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=task.collate, persistent_workers=False
    )
    logger = MetricLogger(run, acc, main)
    bar = tqdm(total=total, initial=start, disable=not (progress and main), desc=f"train {cfg.kind}", unit="step", dynamic_ncols=True)
    skipped_total = 0
    t_last, steps_since = time.perf_counter(), 0
    with StopRequest() as stop:
        for step, batch in zip(range(start, end), loader):
            seed_step(cfg.seed, step, acc.process_index)
            if batch["skipped"]:
                skipped_total += len(batch["skipped"])
                for name in batch["skipped"]:
                    log.warning("skipped unreadable file: %s", name)
            logs = task.train_step(batch, step)
            done = step + 1
            steps_since += 1
            bar.update(1)
            if done % cfg.log_every == 0 or done == end:
                keys = sorted(logs)
                vals = acc.reduce(torch.tensor([logs[k] for k in keys], device=acc.device, dtype=torch.float64), "mean")
                record = dict(zip(keys, vals.tolist()))
                record.update(task.interval_stats())
                now = time.perf_counter()
                record["steps_per_sec"] = steps_since / max(now - t_last, 1e-9)
                record["skipped_files"] = float(skipped_total)
                t_last, steps_since = now, 0
                logger.log(done, record)
                bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "lr") if k in record})
            if done % cfg.image_every == 0:  # every process: gathering sharded weights is a collective
                task.write_images(run / "images" / f"step-{done:08d}.png", done)
            if cfg.eval_every and (done % cfg.eval_every == 0 or done == total):  # every process, as above
                scores = task.validate(done)
                if scores:
                    logger.log(done, scores)
                    log.info("validation at step %d: %s", done, ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
            if done % cfg.save_every == 0 or done == end or stop.signal is not None:
                saved = _save(task, ckpts, acc, done, total)
            if stop.signal is not None:
                bar.close()
                acc.end_training()
                if lock is not None:
                    lock.release()
                return RunResult("interrupted", done, saved, None, stop.signal)
    bar.close()
    step = end
    final = None
    if step >= total:
        task.export_final(run / "final")  # every process (collective under FSDP); the main one writes
        final = run / "final"
    acc.wait_for_everyone()
    acc.end_training()
    if lock is not None:
        lock.release()
    return RunResult("finished" if final else "stopped", step, saved, final)


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
