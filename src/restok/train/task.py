"""What a trainer plugs into the loop (:class:`Task`), and the part both trainers share (:class:`ModelTask`): the
model prepared for the run (DDP through Accelerate, or FSDP2 shards), its EMA, optimizer and scheduler, saved to and
restored from checkpoints, and the EMA weights drawn from or exported as an inference model."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from ..hub.files import CheckpointError
from ..hub.keys import check_state_dict
from ..hub.provenance import Provenance
from ..runtime.files import make_dir
from .distributed import shard_model
from .ema import EMA
from .errors import TrainingError
from .export import inference_model
from .optim import build_optimizer, param_groups

__all__ = ["Task", "ModelTask", "load_initial_weights", "build_for_training", "TRAINING_BYTES_PER_PARAMETER"]

log = logging.getLogger("restok.train")


class Task(Protocol):
    """What a trainer plugs into :func:`~restok.train.loop.run_training`."""

    dataset: torch.utils.data.Dataset

    def build(self, acc: Any) -> None:
        """Create the model, optimizer and data on the accelerator's device (once per process)."""

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """One batch from dataset items."""

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One optimizer step; returns the terms to log."""

    def interval_stats(self) -> dict[str, float]:
        """What to log beside the step terms for the interval since the last log."""

    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """Named tensor dicts a checkpoint keeps (a collective under FSDP)."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Optimizer, scheduler and counters a checkpoint keeps (a collective under FSDP)."""

    def load_checkpoint(self, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None:
        """Restore what the two methods above saved."""

    def write_images(self, path: Path, step: int) -> None:
        """A grid of the EMA model's outputs."""

    def data_identity(self) -> str:
        """The data, as a resume must find it again."""

    def validate(self, step: int) -> dict[str, float]:
        """Held-out metrics of the EMA weights."""

    def inference_config(self) -> dict[str, Any]:
        """The ``config.json`` record of the inference model the EMA weights make."""

    def export_final(self, path: Path) -> None:
        """The EMA weights as an inference model at ``path``."""


def _training_only(model: torch.nn.Module) -> set[str]:
    """State-dict keys of the training-only heads (those that ``inference_config`` leaves out; none for generators)."""
    if not hasattr(model, "inference_config"):
        return set()
    with torch.device("meta"):  # the skeleton's key names only, no memory
        return set(model.state_dict()) - set(type(model)(model.inference_config()).state_dict())


# float32 weights, gradients, AdamW's two moments and the EMA copy: what a run holds per parameter before activations
TRAINING_BYTES_PER_PARAMETER = 20


def build_for_training(cls: Any, config: Any, device: torch.device | None, **overrides: Any) -> Any:
    """A freshly initialised ``cls`` of ``config`` (or of the preset ``config`` names) with ``overrides``, after
    checking that the run's per-parameter state fits ``device``."""
    if isinstance(config, str):
        if config not in cls.presets:
            raise TrainingError(f"unknown {cls.kind} preset {config!r}; available: {sorted(cls.presets)}")
        config = cls.presets[config]
    config = config.replace(**overrides) if overrides else config
    cls.check_fits(
        config, device, TRAINING_BYTES_PER_PARAMETER, "its float32 weights, gradients, AdamW moments and EMA copy"
    )
    return cls(config)


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
        tensors, _ = check_state_dict(
            {k: v for k, v in own.items() if k not in fresh},
            src_model.state_dict(),
            tuple(_training_only(src_model)),
            source,
            f"this run's {type(model).__name__}",
        )
    except CheckpointError as e:
        raise TrainingError(
            f"init_from={source!r} does not fit this run's model: {e}\n"
            "give the run the source's architecture (model / model_overrides)"
        ) from e
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
        cfg = self.cfg  # type: ignore[attr-defined]
        self.acc = acc
        if cfg.init_from:
            fresh = load_initial_weights(model, cfg.init_from)
            log.info(
                "init_from=%s: weights loaded%s",
                cfg.init_from,
                f"; freshly initialised (the source has none): {', '.join(fresh)}" if fresh else "",
            )
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
        return {
            "optimizer": opt,
            "optimizer_layout": "fsdp-full" if self.fsdp else "torch",
            "scheduler": self.sched.state_dict(),
            "ema_updates": self.ema.updates,
            "processes": self.acc.num_processes,
        }

    def load_checkpoint(self, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None:
        """Restore what the two methods above saved (every process reads the same files)."""
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            want = {k for k in self.raw.state_dict()}
            have = set(tensors["model"])
            if want != have:
                raise TrainingError(
                    f"checkpoint model does not fit: missing {sorted(want - have)[:5]}, unexpected "
                    f"{sorted(have - want)[:5]}"
                )
            opts = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.raw, tensors["model"], options=opts)
        else:
            missing, unexpected = self.raw.load_state_dict(tensors["model"], strict=False)
            if missing or unexpected:
                raise TrainingError(
                    f"checkpoint model does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
                )
        self._load_optimizer(state["optimizer"], state.get("optimizer_layout", "torch"))
        self.ema.load_state_dict(tensors["ema"], state["ema_updates"])
        self.sched.load_state_dict(state["scheduler"])

    def _load_optimizer(self, saved: dict[str, Any], layout: str) -> None:
        """The optimizer state of a checkpoint whichever way it was written: by parameter position (``torch``: one
        process or DDP) or by parameter name (``fsdp-full``: FSDP), into this run's optimizer, sharded or not -- so a
        run resumes on another number of processes and across one process and FSDP."""
        if layout not in ("torch", "fsdp-full"):
            raise TrainingError(f"unknown optimizer layout {layout!r} in the checkpoint (written by a newer restok?)")
        if layout == "torch" and not self.fsdp:
            self.opt.load_state_dict(saved)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        opt = self._torch_optimizer()
        if layout == "torch":  # positions -> names, in the order the optimizer holds its parameters
            name_of = {id(p): n for n, p in self.raw.named_parameters()}
            names = [name_of[id(p)] for g in opt.param_groups for p in g["params"]]
            saved = {
                "state": {names[int(i)]: st for i, st in saved["state"].items()},
                "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in saved["param_groups"]],
            }
        set_optimizer_state_dict(self.raw, opt, saved, options=StateDictOptions(full_state_dict=True))

    def validate(self, step: int) -> dict[str, float]:
        """Held-out metrics of the EMA weights (every process calls it; the main one returns them)."""
        return {}

    def export_final(self, path: Path) -> None:
        """EMA weights as an inference model in this package's format (every process calls it, as gathering the
        shadows is a collective under FSDP; the main one writes)."""
        shadow = self.ema.state_dict()
        if not self.acc.is_main_process:
            return
        make_dir(path, inside=path.parent)  # a link planted as RUN/final never receives the model
        model = inference_model(self.inference_config(), shadow)  # type: ignore[attr-defined] # each trainer's own
        cfg = self.cfg  # type: ignore[attr-defined]
        card = {
            "training": {"run": path.parent.name, "kind": cfg.kind, "steps": cfg.max_steps, "config": cfg.to_dict()}
        }
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
