"""The sampling loop: class labels -> token ids, one model call per step of the generator (Sec. 4, Alg. of Fig. 4),
with guidance, a kept prefix and an early stop.

It uses only the :class:`~restok.sampling.protocol.Sampleable` members of the model; a step is a function of its
inputs, and the only state is the explicit KV cache that one sampling run holds (an eager cache made here, or the
static one of a caller's :class:`~restok.sampling.compiled.CompiledSampler`).

Axes: B samples (2B rows with guidance: [cond; uncond]), L tokens, n positions of one step, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .compiled import CompiledSampler
from .guidance import cfg_value, forward_with_cfg
from .logits import sample_from_logits
from .protocol import Sampleable
from .recipe import SamplingConfig

__all__ = ["generate"]

Callback = Callable[[int, torch.Tensor, int], None]


class _EagerSteps:
    """Model calls through the model's own cached step, or (``use_cache=False``) the whole teacher-forced sequence
    recomputed at every call (same tokens; only for measuring what the cache saves)."""

    def __init__(self, model: Sampleable, labels: torch.Tensor, class_emb: torch.Tensor, use_cache: bool) -> None:
        self.model, self.labels, self.class_emb = model, labels, class_emb
        self.cache = model.new_cache(labels.shape[0]) if use_cache else None
        self.steps = model.step_positions

    def _cached(self, tokens: torch.Tensor, start: int, end: int) -> torch.Tensor:
        positions = torch.arange(start, end, device=tokens.device)  # (n,)
        return self.model.step_logits(tokens, self.class_emb, positions, self.model.step_mask(start, end), self.cache)

    def step(self, s: int, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B', n, V) of step ``s`` from the known tokens (B', L)."""
        start, end = self.steps[s]
        if self.cache is None:  # the grouped mask keeps positions < end blind to the unknown tokens after them
            return self.model(tokens, self.labels, drop_labels=False)[:, start:end]
        return self._cached(tokens, start, end)

    def keep(self, k: int, tokens: torch.Tensor) -> None:
        """Keys and values of the first ``k`` (kept) positions, in one call."""
        if self.cache is not None:
            self._cached(tokens, 0, k)


class _CompiledSteps:
    """The same calls through a caller's (or a fresh) :class:`CompiledSampler`."""

    def __init__(self, sampler: CompiledSampler, class_emb: torch.Tensor) -> None:
        self.sampler, self.class_emb = sampler, class_emb
        sampler.reset()

    def step(self, s: int, tokens: torch.Tensor) -> torch.Tensor:
        return self.sampler.step(s, tokens, self.class_emb)

    def keep(self, k: int, tokens: torch.Tensor) -> None:
        self.sampler.keep(k, tokens, self.class_emb)


def _stop_at(model: Sampleable, num_tokens: int | None) -> int:
    """How many tokens to generate: a step boundary (1, 2, ..., A, 2A, ..., L)."""
    ends = [e for _, e in model.step_positions]
    stop = model.num_tokens if num_tokens is None else int(num_tokens)
    if stop not in ends:
        raise ValueError(f"num_tokens must be a step boundary {ends}, got {num_tokens}")
    return stop


def _kept_prefix(model: Sampleable, prefix: Any, batch: int, stop: int) -> torch.Tensor:
    """A kept prefix as (B, k) ids on the model's device (k = 0 without one), or a ValueError naming the problem."""
    if prefix is None:
        return torch.zeros(batch, 0, dtype=torch.long, device=model.device)
    prefix = torch.as_tensor(prefix)
    if prefix.dim() != 2 or prefix.is_floating_point() or prefix.shape[0] not in (1, batch):
        raise ValueError(
            f"prefix must be integer ids of shape (B={batch} or 1, k), got {prefix.dtype} {list(prefix.shape)}"
        )
    kept = prefix.shape[1]
    ends = [e for _, e in model.step_positions]
    if kept and kept not in ends:
        raise ValueError(f"a kept prefix must end at a step boundary {ends}, got {kept} tokens")
    if kept > stop:
        raise ValueError(f"the kept prefix ({kept} tokens) is longer than num_tokens={stop}")
    if prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= model.vocab_size):
        raise ValueError(f"prefix ids must be in [0, {model.vocab_size})")
    return prefix.to(model.device).long().expand(batch, kept)


def _steps_runner(
    model: Sampleable,
    labels: torch.Tensor,
    guided: bool,
    use_cache: bool,
    compile: bool | str,
    sampler: CompiledSampler | None,
) -> _EagerSteps | _CompiledSteps:
    """Who runs the model calls: the eager cached (or uncached) steps, or the compiled ones."""
    run_labels = torch.cat([labels, torch.full_like(labels, model.null_class)]) if guided else labels  # (B',)
    class_emb = model.embed_labels(run_labels)  # (B', 1, D), [cond; null] with guidance
    if (compile or sampler is not None) and not use_cache:
        raise ValueError("compile=True runs the cached steps; it cannot be combined with use_cache=False")
    if sampler is None and compile:
        sampler = CompiledSampler(model, run_labels.shape[0], compile)
    if sampler is None:
        return _EagerSteps(model, run_labels, class_emb, use_cache)
    sampler.check(model, run_labels.shape[0])
    return _CompiledSteps(sampler, class_emb)


@torch.no_grad()
def generate(
    model: Sampleable,
    class_labels: Any,
    sampling: SamplingConfig,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    use_cache: bool = True,
    num_tokens: int | None = None,
    prefix: torch.Tensor | None = None,
    compile: bool | str = False,
    sampler: CompiledSampler | None = None,
) -> torch.Tensor:
    """Generate token ids (B, L) with a generator (Sec. 4) under ``sampling``.

    Args:
        model: any :class:`~restok.sampling.protocol.Sampleable` generator, in eval mode (dropout is not switched off).
        class_labels: B class ids in ``[0, num_classes)``.
        sampling: guidance (1.0 = none; > 1 batches the unconditional pass with the conditional one), schedule
            (call ``s`` of ``N`` has ratio ``s / (N - 1)``), temperature, then top-k, then top-p filtering.
        generator: a ``torch.Generator`` for reproducible sampling (the global RNG if None).
        callback: called after each model call as ``callback(step, tokens_so_far (B, end), end)``.
        use_cache: False recomputes the whole teacher-forced sequence at every call instead of reading the KV cache
            (same tokens; only for measuring what the cache saves).
        num_tokens: stop after the call that completes this many tokens (a step boundary: 1, 2, ..., A, 2A, ..., L),
            returning (B, num_tokens) ids, decodable by the tokenizer's prefix decoding when it is a prefix length.
        prefix: (B, k) or (1, k) ids kept as they are (k a step boundary, e.g. a coarse image's first tokens): their
            keys and values are computed in one teacher-forced call, and sampling continues from the step after them
            (coarse-kept variations). k = 0 is plain generation.
        compile: ``True`` (or a ``torch.compile`` mode) runs each step through a fresh
            :class:`~restok.sampling.compiled.CompiledSampler` (one ``fullgraph`` graph per step shape, CUDA graphs on
            CUDA; compiled once per process). Same tokens as eager up to the compiled kernels' float rounding.
        sampler: a :class:`~restok.sampling.compiled.CompiledSampler` the caller keeps for many calls of one batch
            size (its static cache and recorded CUDA graphs are reused).
    """
    sp = sampling
    labels = model.check_labels(class_labels).to(model.device)  # (B,)
    guided = sp.cfg_scale > 1.0
    if guided and not model.supports_guidance:
        raise ValueError("this generator has no null class (class_dropout_prob was 0), so it cannot use guidance")
    B, steps, stop = labels.shape[0], model.step_positions, _stop_at(model, num_tokens)
    kept = _kept_prefix(model, prefix, B, stop)  # (B, k)
    runner = _steps_runner(model, labels, guided, use_cache, compile, sampler)
    seq = torch.zeros(B, model.num_tokens, dtype=torch.long, device=labels.device)  # (B, L) known tokens
    seq[:, : kept.shape[1]] = kept
    if kept.shape[1]:
        runner.keep(kept.shape[1], torch.cat([seq, seq]) if guided else seq)
    for s, (start, end) in enumerate(steps):
        if end <= kept.shape[1]:
            continue
        if start >= stop:
            break
        scale = cfg_value(sp.cfg_schedule, s, len(steps), sp.cfg_scale, sp.cfg_start) if guided else None
        logits = forward_with_cfg(lambda tokens, s=s: runner.step(s, tokens), seq, scale)  # (B, n, V)
        new = sample_from_logits(logits.reshape(-1, logits.shape[-1]), sp.temperature, sp.top_k, sp.top_p, generator)
        seq[:, start:end] = new.view(B, end - start)  # (B, n)
        if callback is not None:
            callback(s, seq[:, :end], end)
    return seq[:, :stop].clone()
