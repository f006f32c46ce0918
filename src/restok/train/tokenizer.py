"""Tokenizer training (Sec. 3.4, Eq. 4; official ``train_restok.py``) for every family that declares a training hook
(ResTok, TiTok single-stage, One-D-Piece, LlamaGen's VQGAN; :mod:`restok.models.training`): one step = the tokenizer
update on L_G, then (once the GAN has started) the discriminator-head update on L_D, then the EMA. The family decides
what its forward computes and which prefix each sample decodes (nested dropout, tail-token drop, every token); the
objective, schedule, EMA, checkpoints, resume and sharding are the same for all."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data.datasets import ImageDataset, collate_images
from ..data.images import make_grid, save_image
from ..data.sources import open_image_source
from ..eval.inception import load_inception
from ..eval.metrics import codebook_stats, entropy_bits
from ..eval.reconstruction import reconstruction_batch, summarize_reconstruction
from ..models.tokenizer import Tokenizer
from ..runtime.seeds import derive_seed
from .codebook import DeadCodeRestarter
from .config import TrainConfig
from .distributed import enable_activation_checkpointing, full_tensor
from .errors import TrainingError
from .export import inference_model_config
from .families import tokenizer_run
from .loop import RunResult, run_training
from .losses import TokenizerLoss
from .optim import build_optimizer, build_scheduler, param_groups
from .task import ModelTask, build_for_training

__all__ = ["TokenizerTask", "train_tokenizer"]

log = logging.getLogger("restok.train")


def build_tokenizer_for_training(cfg: TrainConfig, teacher_dim: int, device: torch.device | None = None) -> Tokenizer:
    """The run's tokenizer (:func:`~restok.train.families.tokenizer_run`: the preset, or the ``init_from`` source's
    architecture, with the overrides and the alignment heads its family has), refused before it is built when its
    training state cannot fit ``device``."""
    cls, config = tokenizer_run(cfg, teacher_dim)
    return build_for_training(cls, config, device)


class TokenizerTask(ModelTask):
    """Model, discriminator, optimizers, EMA and data of a tokenizer run."""

    def __init__(self, cfg: TrainConfig, data: str) -> None:
        self.cfg = cfg
        if cfg.eval_every and not cfg.eval_data:
            raise TrainingError(
                f"eval_every={cfg.eval_every} validates on held-out images: pass --eval-data DIR (or eval_data=DIR), "
                "or turn validation off with eval_every=0"
            )
        self.source = open_image_source(data)
        self.counts: torch.Tensor | None = None
        self._eval_images: list[torch.Tensor] | None = None
        self._inception: Any = None

    def build(self, acc: Any) -> None:
        """Create everything on the accelerator's device (called once per process)."""
        cfg = self.cfg
        self.acc = acc
        torch.manual_seed(cfg.seed)  # initial weights: the same on every process
        self.loss = TokenizerLoss(cfg.loss).to(acc.device)
        model = build_tokenizer_for_training(cfg, self.loss.teacher_dim, acc.device)
        teacher = model.training_hook.setup(model, cfg)  # what a stage freezes or starts from (TiTok's two stages)
        if teacher is not None:
            self.loss.set_proxy_teacher(teacher.to(acc.device))
        elif cfg.loss.proxy_teacher:
            raise TrainingError(f"loss.proxy_teacher trains a two-stage TiTok's stage 1, not a {model.title}")
        self.dataset = ImageDataset(
            self.source, model.config.image_size, train=True, min_crop=cfg.min_crop, flip=cfg.flip
        )
        blocks = model.training_hook.blocks
        if cfg.grad_checkpointing:
            enable_activation_checkpointing(model, blocks)
        model.train()
        self.prepare_model(acc, model, blocks)
        self.sched = build_scheduler(self.opt, cfg.optimizer, cfg.max_steps)
        if cfg.compile:
            self.model = torch.compile(self.model)
        self.counts = torch.zeros(self.raw.codebook_size, dtype=torch.long)
        self.levels = self.raw.level_bounds()  # per-level usage: a coarse level can collapse alone
        self.level_counts = torch.zeros(len(self.levels), self.raw.codebook_size, dtype=torch.long)
        self.collapse_warned: set[int] = set()
        self.restarter = (
            DeadCodeRestarter(self.raw.codebook_size, cfg.restart_dead_codes, cfg.seed)
            if cfg.restart_dead_codes
            else None
        )
        self.d_params: list[nn.Parameter] = []
        if self.loss.discriminator is not None:
            self.d_params = [p for p in self.loss.discriminator.heads.parameters()]
            d_total = max(1, cfg.max_steps - cfg.loss.discriminator_start)
            d_opt = build_optimizer(
                param_groups(self.loss.discriminator.heads, cfg.disc_optimizer.weight_decay), cfg.disc_optimizer
            )
            self.loss_ddp, self.d_opt = acc.prepare(self.loss, d_opt)
            self.d_sched = build_scheduler(self.d_opt, cfg.disc_optimizer, d_total)
        # Preview images spread over the data (class-sorted folders would otherwise show one class only).
        n = len(self.dataset)
        picks = sorted({(i * n) // min(8, n) for i in range(min(8, n))})
        self.preview = torch.stack([self.dataset[(i, i)]["image"] for i in picks])

    def data_identity(self) -> str:
        """The training images, as a resume must find them again."""
        return self.source.description

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch images (skipped files listed)."""
        return collate_images(items)

    def _check_finite(self, value: torch.Tensor, step: int, what: str, logs: dict[str, float]) -> None:
        """Stop (before any weight changes) if any process saw a NaN/Inf loss."""
        bad = torch.tensor([0.0 if torch.isfinite(value).all() else 1.0], device=self.acc.device)
        if float(self.acc.reduce(bad, "sum")) > 0:
            terms = ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
            raise TrainingError(
                f"{what} loss is not finite at step {step + 1} ({terms}); the weights were not updated and the "
                "newest checkpoint is intact -- lower the learning rate or check the data, then --resume"
            )

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One optimizer step of the tokenizer (and of the discriminator heads once the GAN is on)."""
        cfg, acc = self.cfg, self.acc
        images = batch["image"].to(acc.device)  # (b, 3, S, S) this process's slice of the global batch
        b, rank = images.shape[0], acc.process_index
        # Nested-dropout lengths are drawn for the whole global batch, then sliced: 1 and N processes agree.
        keep_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "keep", step))
        keep = self.raw.sample_kept_tokens(cfg.batch_size, keep_gen)[rank * b : (rank + 1) * b]
        loss_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "loss", step, rank))
        chunks = list(zip(images.chunk(cfg.grad_accum), keep.chunk(cfg.grad_accum)))
        for p in self.d_params:
            p.requires_grad_(False)  # the tokenizer's update must not touch D
        sums: dict[str, float] = {}
        recons, latents = [], []
        step_counts = torch.zeros_like(self.counts)
        for i, (x, k) in enumerate(chunks):
            sync = i == len(chunks) - 1
            with self.grad_sync(self.raw if self.fsdp else self.model, sync):
                with acc.autocast():
                    out = self.model(x, kept_tokens=k)
                loss, logs = self.loss.generator_loss(x, out, step, loss_gen)
                self._check_finite(loss.detach(), step, "tokenizer", logs)
                acc.backward(loss / len(chunks))
            recons.append(out.reconstruction.detach())
            self._count_ids(out.ids, step_counts)
            if self.restarter is not None:
                latents.append(out.latents.reshape(-1, out.latents.shape[-1]))  # (b*L, C)
            for key, v in logs.items():
                sums[key] = sums.get(key, 0.0) + v / len(chunks)
        self.counts += step_counts
        gnorm = acc.clip_grad_norm_(
            self.model.parameters(), cfg.optimizer.grad_clip if cfg.optimizer.grad_clip > 0 else float("inf")
        )
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        out_logs = {
            "loss": sums.pop("total"),
            **sums,
            "grad_norm": float(full_tensor(gnorm)),
            "lr": self.sched.get_last_lr()[0],
        }
        if self.loss.gan_active(step):
            out_logs.update(self._discriminator_step(chunks, recons, step, loss_gen))
        self.ema.update(self.raw)
        if self.restarter is not None:
            self.restarter.step(
                acc,
                step,
                step_counts,
                torch.cat(latents),
                dict(self.raw.named_parameters()),
                self._torch_optimizer(),
                self.ema.shadow,
            )
        return out_logs

    def _discriminator_step(
        self,
        chunks: list[tuple[torch.Tensor, torch.Tensor]],
        recons: list[torch.Tensor],
        step: int,
        gen: torch.Generator,
    ) -> dict[str, float]:
        """The discriminator heads' update on L_D over the step's micro-batches (real images vs the detached
        reconstructions); returns its logged terms."""
        cfg, acc = self.cfg, self.acc
        for p in self.d_params:
            p.requires_grad_(True)
        d_sums: dict[str, float] = {}
        for i, ((x, _), r) in enumerate(zip(chunks, recons)):
            sync = i == len(chunks) - 1
            with nullcontext() if sync else acc.no_sync(self.loss_ddp):
                d_loss, d_logs = self.loss_ddp(x, r, gen)
                self._check_finite(d_loss.detach(), step, "discriminator", d_logs)
                acc.backward(d_loss / len(chunks))
            for key, v in d_logs.items():
                d_sums[key] = d_sums.get(key, 0.0) + v / len(chunks)
        clip = cfg.disc_optimizer.grad_clip if cfg.disc_optimizer.grad_clip > 0 else float("inf")
        d_norm = acc.clip_grad_norm_(self.d_params, clip)
        self.d_opt.step()
        self.d_sched.step()
        self.d_opt.zero_grad(set_to_none=True)
        return {**d_sums, "d_grad_norm": float(d_norm), "d_lr": self.d_sched.get_last_lr()[0]}

    def _count_ids(self, ids: torch.Tensor, step_counts: torch.Tensor) -> None:
        """Add a micro-batch's ids (b, L) to the step's code counts and to each latent level's."""
        ids = ids.cpu()
        step_counts += torch.bincount(ids.reshape(-1), minlength=self.counts.numel())
        for lvl, (a, e) in enumerate(self.levels):
            self.level_counts[lvl] += torch.bincount(ids[:, a:e].reshape(-1), minlength=self.counts.numel())

    def interval_stats(self) -> dict[str, float]:
        """Codebook usage and entropy (Eq. 5-6) of the ids seen since the last log, on this process."""
        out = self.restarter.interval_stats() if self.restarter is not None else {}
        if self.counts is None or int(self.counts.sum()) == 0:
            return out
        ids = torch.repeat_interleave(torch.arange(self.counts.numel()), self.counts)
        stats = codebook_stats(ids, self.counts.numel())
        self.counts.zero_()
        return {"codebook_usage": stats["usage"], "codebook_entropy": stats["entropy"], **self._level_stats(), **out}

    # A level whose ids use fewer than this share of the codes they could use (min(K, ids seen)) has collapsed.
    COLLAPSE_SHARE = 0.05

    def _level_stats(self) -> dict[str, float]:
        """Usage and entropy of each latent level's ids since the last log, and one warning per level that collapses."""
        out: dict[str, float] = {}
        K = self.level_counts.shape[1]
        for lvl, counts in enumerate(self.level_counts):
            n = int(counts.sum())
            if not n:
                continue
            used = int((counts > 0).sum())
            out[f"codebook_usage_level{lvl}"] = used / K
            out[f"codebook_entropy_level{lvl}"] = entropy_bits(counts)
            if used < self.COLLAPSE_SHARE * min(K, n) and lvl not in self.collapse_warned:
                self.collapse_warned.add(lvl)
                log.warning(
                    "codebook collapse at latent level %d (tokens %d-%d): its %d ids used %d of %d codes; consider "
                    "restart_dead_codes=N or model_overrides={entropy_loss_ratio: 0.1} "
                    "(docs: Train your own, Codebook collapse)",
                    lvl,
                    self.levels[lvl][0],
                    self.levels[lvl][1] - 1,
                    n,
                    used,
                    K,
                )
        self.level_counts.zero_()
        return out

    # ----------------------------------------------------------------------------------- checkpoints
    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """Model and EMA tensors, plus the loss module's (discriminator heads, LeCam EMAs)."""
        out = super().checkpoint_tensors()
        if self.loss.discriminator is not None:
            out["loss"] = self.loss.saved_state()
        if self.restarter is not None:
            out["codebook"] = self.restarter.state_tensors()
        return out

    def checkpoint_state(self) -> dict[str, Any]:
        """Optimizer/scheduler states (both networks) and the EMA's update count."""
        state = super().checkpoint_state()
        if self.loss.discriminator is not None:
            state.update(disc_optimizer=self.d_opt.state_dict(), disc_scheduler=self.d_sched.state_dict())
        if self.restarter is not None:
            state["dead_codes"] = self.restarter.state()
        return state

    def load_checkpoint(self, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None:
        """Restore what the two methods above saved."""
        super().load_checkpoint(tensors, state)
        if self.loss.discriminator is not None:
            if "loss" not in tensors:
                raise TrainingError("the checkpoint has no discriminator state but this config trains one")
            self.loss.load_saved_state(tensors["loss"])
            self.d_opt.load_state_dict(state["disc_optimizer"])
            self.d_sched.load_state_dict(state["disc_scheduler"])
        if self.restarter is not None:
            if "codebook" not in tensors or "dead_codes" not in state:
                raise TrainingError("the checkpoint has no dead-code record but this config restarts dead codes")
            self.restarter.load(tensors["codebook"], state["dead_codes"])

    # ----------------------------------------------------------------------------------- outputs
    @torch.no_grad()
    def write_images(self, path: Path, step: int) -> None:
        """Originals (top row) over EMA reconstructions from each prefix length (one row each)."""
        self.with_ema_model(self._fresh_model, lambda model: self._reconstruction_grid(model, path))

    def _fresh_model(self) -> Tokenizer:
        """An unsharded model of the run's family and config (FSDP gathers the EMA weights into it)."""
        return type(self.raw)(self.raw.config)

    def _reconstruction_grid(self, model: Tokenizer, path: Path) -> None:
        x = self.preview.to(self.acc.device)
        rows = [x.cpu(), *(r.cpu() for r in model.preview_rows(x))]
        save_image(make_grid(torch.cat(rows), nrow=x.shape[0]), path)

    def inference_config(self) -> dict[str, Any]:
        """The inference tokenizer (no alignment heads) that the EMA weights make."""
        return inference_model_config(self.raw, self.raw.inference_config())

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """PSNR, SSIM, codebook usage/entropy (and rFID with ``eval_inception``) of the EMA weights on the first
        ``eval_images`` held-out images, through the evaluation protocol of :mod:`restok.evaluation`."""
        scores: dict[str, float] = {}

        def run(model: Tokenizer) -> None:
            if self._eval_images is None:
                source = open_image_source(self.cfg.eval_data)
                ds = ImageDataset(source, model.config.image_size, train=False)
                n = min(self.cfg.eval_images, len(ds))
                self._eval_images = [ds[i]["image"] for i in range(n)]  # unreadable files are replaced and named
                self._inception = (
                    load_inception(self.cfg.eval_inception, device=self.acc.device) if self.cfg.eval_inception else None
                )
            parts = []
            for i in range(0, len(self._eval_images), self.cfg.eval_batch_size):
                x = torch.stack(self._eval_images[i : i + self.cfg.eval_batch_size]).to(self.acc.device)
                parts.append(reconstruction_batch(model, x, model.num_tokens, self._inception))
            merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            summary = summarize_reconstruction(merged, model.codebook_size)
            scores.update({f"eval/{k}": float(v) for k, v in summary.items() if v is not None})

        self.with_ema_model(self._fresh_model, run)
        return scores


def train_tokenizer(cfg: TrainConfig, data: str, out: str | Path, **options: Any) -> RunResult:
    """Train the tokenizer the config names (any family with a training hook) on the images at ``data`` into the run
    folder ``out``; ``options`` are
    :func:`~restok.train.loop.run_training`'s (max_steps, stop_at, resume, device, progress)."""
    if cfg.kind != "tokenizer":
        raise TrainingError(f"config is a {cfg.kind} config, not a tokenizer config")
    return run_training(lambda c: TokenizerTask(c, data), cfg, out, **options)
