"""Generator training (Sec. 4; official ``train_llamagen_restok.py``): next-hierarchy (HAR) or next-token
(vanilla) cross-entropy on pre-extracted codes, teacher-forced with the grouped attention mask, class labels
dropped to the null class for classifier-free guidance."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data.codes import CodesDataset, collate_codes
from ..data.images import make_grid, save_image
from ..models.auto import load_tokenizer
from ..models.har import HARGenerator
from ..models.layers.llama import TransformerBlock
from ..runtime.seeds import derive_seed
from .config import TrainConfig
from .distributed import enable_activation_checkpointing, full_tensor
from .errors import TrainingError
from .export import inference_model_config
from .families import generator_run
from .loop import RunResult, run_training
from .optim import build_scheduler
from .task import ModelTask, build_for_training

__all__ = ["GeneratorTask", "train_generator"]


def build_generator_for_training(
    cfg: TrainConfig, meta: dict[str, Any], device: torch.device | None = None
) -> HARGenerator:
    """The generator that fits the code set (:func:`~restok.train.families.generator_run`: HAR on ResTok's levels,
    vanilla AR on a 1-D sequence, LlamaGen's GPT on a grid) with the preset's sizes and the set's token count,
    vocabulary and class count (never constants); refused before it is built when its training state cannot fit
    ``device``."""
    cls, config = generator_run(cfg, meta)
    return build_for_training(cls, config, device)


log = logging.getLogger("restok.train")


_TOKENIZER_SHA = re.compile(r"tokenizer sha256 ([0-9a-f]{64})")


def code_set_identity(path: str | Path, meta: dict[str, Any]) -> str:
    """A generator run's ``data`` record (``RUN/config.yaml``): the code set's folder, size and tokenizer SHA-256."""
    sha = (meta.get("tokenizer") or {}).get("sha256")
    size = f"{meta['num_samples']} samples x {meta['num_crops']} crops"
    return f"code set {Path(path).resolve()} ({size}, tokenizer sha256 {sha})"


def code_set_tokenizer_sha(identity: str) -> str | None:
    """The tokenizer SHA-256 that a :func:`code_set_identity` record names (None if it names none)."""
    found = _TOKENIZER_SHA.search(identity)
    return found.group(1) if found else None


class GeneratorTask(ModelTask):
    """Model, optimizer, EMA and codes of a generator run."""

    def __init__(self, cfg: TrainConfig, codes: str) -> None:
        self.cfg = cfg
        self.dataset = CodesDataset(codes)
        self.codes_path = codes

    def build(self, acc: Any) -> None:
        """Create everything on the accelerator's device (called once per process)."""
        cfg = self.cfg
        self.acc = acc
        torch.manual_seed(cfg.seed)
        model = build_generator_for_training(cfg, self.dataset.meta, acc.device)
        if cfg.grad_checkpointing:
            enable_activation_checkpointing(model, (TransformerBlock,))
        model.train()
        self.prepare_model(acc, model, (TransformerBlock,))
        self.sched = build_scheduler(self.opt, cfg.optimizer, cfg.max_steps)
        if cfg.compile:
            self.model = torch.compile(self.model)
        self._tokenizer = None

    def data_identity(self) -> str:
        """The code set, as a resume must find it again: its folder, size and tokenizer."""
        return code_set_identity(self.codes_path, self.dataset.meta)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch token sequences and labels."""
        return collate_codes(items)

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One optimizer step on the HAR (or vanilla) cross-entropy (spec §3.2)."""
        cfg, acc, raw = self.cfg, self.acc, self.raw
        tokens = batch["tokens"].to(acc.device)  # (b, L)
        # a ragged code set: positions past each sample's kept length are not predicted (their inputs never feed an
        # earlier position: the HAR layout reads only coarser levels)
        targets = torch.where(
            torch.arange(tokens.shape[1], device=acc.device)[None, :] < batch["length"].to(acc.device)[:, None],
            tokens,
            -100,
        )
        labels = batch["label"].clamp_min(0).to(acc.device)  # unlabelled codes (-1) all train as class 0
        b, rank = tokens.shape[0], acc.process_index
        # Label dropout drawn for the global batch and sliced, so 1 and N processes agree.
        drop_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "labels", step))
        drop = (torch.rand(cfg.batch_size, generator=drop_gen) < raw.config.class_dropout_prob)[
            rank * b : (rank + 1) * b
        ]
        labels = torch.where(drop.to(acc.device), torch.full_like(labels, raw.null_class), labels)
        chunks = list(zip(tokens.chunk(cfg.grad_accum), labels.chunk(cfg.grad_accum), targets.chunk(cfg.grad_accum)))
        loss_sum, acc_sum = 0.0, 0.0
        for i, (t, y, tgt) in enumerate(chunks):
            sync = i == len(chunks) - 1
            with self.grad_sync(self.raw if self.fsdp else self.model, sync):
                with acc.autocast():
                    logits = self.model(t, y, drop_labels=False)  # (b, L, V)
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
                bad = torch.tensor([0.0 if torch.isfinite(loss.detach()) else 1.0], device=acc.device)
                if float(acc.reduce(bad, "sum")) > 0:
                    raise TrainingError(
                        f"generator loss is not finite at step {step + 1}; the weights were not updated and the newest "
                        "checkpoint is intact -- lower the learning rate, then --resume"
                    )
                acc.backward(loss / len(chunks))
            loss_sum += float(loss.detach()) / len(chunks)
            valid = tgt != -100
            acc_sum += float((logits.argmax(-1) == t)[valid].float().mean()) / len(chunks)
        clip = cfg.optimizer.grad_clip if cfg.optimizer.grad_clip > 0 else float("inf")
        gnorm = acc.clip_grad_norm_(self.model.parameters(), clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(raw)
        return {
            "loss": loss_sum,
            "token_accuracy": acc_sum,
            "grad_norm": float(full_tensor(gnorm)),
            "lr": self.sched.get_last_lr()[0],
        }

    def interval_stats(self) -> dict[str, float]:
        """Nothing beyond the step logs."""
        return {}

    def _load_tokenizer(self) -> Any:
        """The tokenizer that decodes sample grids: the config's, else the one the code set names (if loadable)."""
        if self._tokenizer is None:
            name = self.cfg.tokenizer or self.dataset.meta["tokenizer"].get("source")
            if isinstance(name, dict):  # what from_pretrained records: {"source": path or Hub id, "weights": file}
                name = name.get("source")
            if not name:
                log.warning("no tokenizer to decode sample grids (set tokenizer=PATH); training goes on without them")
                self._tokenizer = False
                return self._tokenizer
            try:
                self._tokenizer = load_tokenizer(str(name)).eval().to(self.acc.device)
            except Exception as e:  # noqa: BLE001 - grids are optional; training goes on without them
                log.warning("cannot load tokenizer %s for sample grids (%s); set tokenizer=PATH", name, e)
                self._tokenizer = False
        return self._tokenizer

    @torch.no_grad()
    def write_images(self, path: Path, step: int) -> None:
        """A grid of EMA samples (one row per class, up to 8 classes), when a tokenizer can decode them."""
        build = lambda: type(self.raw)(self.raw.config)  # noqa: E731 - the run's class: HAR, vanilla AR or LlamaGen GPT
        self.with_ema_model(build, lambda model: self._sample_grid(model, path, step))

    def _sample_grid(self, model: HARGenerator, path: Path, step: int) -> None:
        tok = self._load_tokenizer()
        if not tok:
            return
        n_cls = min(8, model.config.num_classes)
        labels = torch.arange(n_cls).repeat_interleave(4).to(self.acc.device)
        ids = model.generate(labels, cfg_scale=2.0, generator=torch.Generator(self.acc.device).manual_seed(step))
        save_image(make_grid(tok.decode(ids).cpu(), nrow=4), path)

    def inference_config(self) -> dict[str, Any]:
        """The generator that the EMA weights make."""
        return inference_model_config(self.raw, self.raw.config)


def train_generator(cfg: TrainConfig, codes: str, out: str | Path, **options: Any) -> RunResult:
    """Train the generator that fits the code set at ``codes`` (HAR, vanilla AR or LlamaGen's GPT) into the run folder
    ``out``; ``options`` are
    :func:`~restok.train.loop.run_training`'s (max_steps, stop_at, resume, device, progress)."""
    if cfg.kind != "generator":
        raise TrainingError(f"config is a {cfg.kind} config, not a generator config")
    return run_training(lambda c: GeneratorTask(c, codes), cfg, out, **options)
