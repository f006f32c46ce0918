"""Sampling for the HAR generator: guidance schedules, logit filtering and the cached decode loop.

Every function here is a pure function of its inputs; the only state is the explicit KV cache that
:func:`generate` creates and drops.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F


__all__ = [
    "SamplingConfig",
    "SAMPLING_PRESETS",
    "RELEASED_RECIPE",
    "CFG_SCHEDULES",
    "OFFICIAL_CFG_OFFSET",
    "cfg_value",
    "cfg_values",
    "guided_logits",
    "filter_logits",
    "sample_from_logits",
    "generate",
]

# The official sampler never uses a guidance scale of exactly 1 where a schedule lowers it: `step` uses
# 1 + 1e-4 before its start and `linear` adds 1e-4 everywhere. We keep the offset so that the released
# weights sample the same tokens; it changes logits by 1e-4 of the (cond - uncond) gap.
OFFICIAL_CFG_OFFSET = 1e-4


def _constant(ratio: float, scale: float, start: float) -> float:
    """The full scale at every step."""
    return scale


def _step(ratio: float, scale: float, start: float) -> float:
    """Full scale from ``ratio >= start`` on, (almost) 1 before (the released recipe: 3.75 from 0.25)."""
    if scale == 1.0 or ratio >= start:
        return scale
    return 1.0 + OFFICIAL_CFG_OFFSET


def _linear(ratio: float, scale: float, start: float) -> float:
    """Linear ramp from 1 at the first call to ``scale`` at the last."""
    return 1.0 + (scale - 1.0) * ratio + OFFICIAL_CFG_OFFSET


CFG_SCHEDULES: dict[str, Callable[[float, float, float], float]] = {
    "constant": _constant,
    "step": _step,
    "linear": _linear,
}


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample from a HAR generator: classifier-free guidance (scale, schedule, start), temperature, top-k and
    top-p. Stored with a generator as ``generation_config.json`` (as transformers does), so ``gen.generate(labels)``
    follows the recipe its weights were released with unless told otherwise; validated when built."""

    cfg_scale: float = 1.0  # 1.0 = no guidance
    cfg_schedule: str = "constant"  # a name in CFG_SCHEDULES
    cfg_start: float = 0.0  # ratio at which the `step` schedule switches guidance on
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int):
            if isinstance(self.top_k, float) and self.top_k.is_integer():
                object.__setattr__(self, "top_k", int(self.top_k))
            else:
                raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        for name in ("cfg_scale", "cfg_start", "temperature", "top_p"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))
        _check_settings(self.cfg_scale, self.cfg_schedule, self.cfg_start, self.temperature, self.top_k, self.top_p)

    def replace(self, **changes: Any) -> "SamplingConfig":
        """A copy with some settings changed (None values are ignored)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown sampling setting(s) {unknown}; known: {sorted(names)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SamplingConfig":
        """Build from a dict (e.g. ``generation_config.json``), naming unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown sampling setting(s) {unknown}; known: {sorted(names)}")
        return cls(**dict(data))

    @classmethod
    def load(cls, path: str | Path) -> "SamplingConfig":
        """Read a JSON file: a sampling config, or a file holding one under ``sampling`` (e.g. a search's best)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read sampling config {path}: {e}") from None
        if isinstance(data, dict) and isinstance(data.get("sampling"), dict):
            data = data["sampling"]
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a sampling config must be a JSON object")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None



def cfg_value(schedule: str, step: int, num_steps: int, scale: float, start: float = 0.0) -> float:
    """Guidance scale of model call ``step`` out of ``num_steps``; the call's ratio is ``step / (num_steps - 1)``."""
    if schedule not in CFG_SCHEDULES:
        raise ValueError(f"unknown cfg_schedule {schedule!r}; choose one of {sorted(CFG_SCHEDULES)}")
    if not 0 <= step < num_steps:
        raise ValueError(f"step {step} out of range for {num_steps} steps")
    ratio = step / (num_steps - 1) if num_steps > 1 else 1.0
    return CFG_SCHEDULES[schedule](ratio, float(scale), float(start))


def cfg_values(schedule: str, num_steps: int, scale: float, start: float = 0.0) -> list[float]:
    """Guidance scale of every model call, e.g. for 9 HAR steps."""
    return [cfg_value(schedule, s, num_steps, scale, start) for s in range(num_steps)]


def guided_logits(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on a batch ``[cond; uncond]`` (2B, ...) -> (B, ...): u + (c - u) * scale."""
    cond, uncond = logits.chunk(2, dim=0)
    return uncond + (cond - uncond) * scale


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Top-k, then top-p (nucleus) filtering of (N, V) logits; removed entries become -inf.

    ``top_k = 0`` and ``top_p = 1.0`` switch the filters off. Nucleus keeps the smallest prefix of the
    sorted distribution whose cumulative probability exceeds ``top_p``, and always the top token.
    """
    if top_k > 0:
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k)[0][..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))  # not logits[mask] = ...: that syncs on CUDA
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # shift right: keep the token that crosses top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return logits


def sample_from_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one id per row of (N, V) logits after temperature and filtering -> (N,) int64."""
    logits = logits / max(temperature, 1e-5)
    if top_k > 0 or top_p < 1.0:
        logits = filter_logits(logits, top_k, top_p)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]


def _check_settings(cfg_scale: float, cfg_schedule: str, cfg_start: float, temperature: float, top_k: int, top_p: float) -> None:
    """Raise a ValueError naming the first out-of-range sampling setting."""
    if cfg_schedule not in CFG_SCHEDULES:
        raise ValueError(f"unknown cfg_schedule {cfg_schedule!r}; choose one of {sorted(CFG_SCHEDULES)}")
    if not cfg_scale >= 1.0:
        raise ValueError(f"cfg_scale must be >= 1.0 (1.0 = no guidance), got {cfg_scale}")
    if not 0.0 <= cfg_start <= 1.0:
        raise ValueError(f"cfg_start must be in [0, 1], got {cfg_start}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1.0 = off), got {top_p}")


# The released sampling recipe (official README): step schedule at 3.75 from ratio 0.25, top-p 0.95.
RELEASED_RECIPE = SamplingConfig(cfg_scale=3.75, cfg_schedule="step", cfg_start=0.25, top_k=0, top_p=0.95, temperature=1.0)
SAMPLING_PRESETS: dict[str, SamplingConfig] = {"released": RELEASED_RECIPE, "none": SamplingConfig()}


@torch.no_grad()
def generate(
    model: Any,
    class_labels: Any,
    sampling: SamplingConfig,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[int, torch.Tensor, int], None] | None = None,
    use_cache: bool = True,
    num_tokens: int | None = None,
    prefix: torch.Tensor | None = None,
    compile: bool | str = False,
) -> torch.Tensor:
    """Generate token ids (B, L) with a :class:`~restok.generator.HARGenerator` (Sec. 4) under ``sampling``.

    Uses only the model's public interface: ``check_labels``, ``embed_labels``, ``null_class``,
    ``supports_guidance``, ``new_cache``, ``forward_step`` (and the teacher-forced ``forward`` without the cache).

    Args:
        model: the generator (eval mode is expected; dropout is not switched off for you).
        class_labels: B class ids in ``[0, num_classes)``.
        sampling: guidance (1.0 = none; > 1 batches the unconditional pass with the conditional one), schedule
            (call ``s`` of ``N`` has ratio ``s / (N - 1)``), temperature, then top-k, then top-p filtering.
        generator: a ``torch.Generator`` for reproducible sampling (the global RNG if None).
        callback: called after each model call as ``callback(step, tokens_so_far (B, end), end)``.
        use_cache: False recomputes the whole teacher-forced sequence at every call instead of reading
            the static KV cache (same tokens; only for measuring what the cache saves).
        num_tokens: stop after the call that completes this many tokens (a step boundary: 1, 2, ..., A, 2A, ..., L),
            returning (B, num_tokens) ids, decodable by the tokenizer's prefix decoding when it is a prefix length.
        prefix: (B, k) or (1, k) ids kept as they are (k a step boundary, e.g. a coarse image's first tokens): their
            keys and values are computed in one teacher-forced call, and sampling continues from the step after them
            (coarse-kept variations). k = 0 is plain generation.
        compile: ``True`` runs each step through :mod:`restok.compiled` (one ``fullgraph`` graph per step shape, a
            static KV cache, CUDA graphs on CUDA; the first call per batch size compiles); a string picks the
            ``torch.compile`` mode. Same tokens as eager up to the compiled kernels' float rounding.
    """
    sp = sampling
    labels = model.check_labels(class_labels, allow_null=False).to(model.device)
    B, L = labels.shape[0], model.num_tokens
    guided = sp.cfg_scale > 1.0
    if guided and not model.supports_guidance:
        raise ValueError("this generator has no null class (class_dropout_prob was 0), so it cannot use guidance")
    batch_labels = torch.cat([labels, torch.full_like(labels, model.null_class)]) if guided else labels
    class_emb = model.embed_labels(batch_labels)  # (B', 1, D)
    if compile and not use_cache:
        raise ValueError("compile=True runs the cached steps; it cannot be combined with use_cache=False")
    compiled = None
    if compile:
        from .compiled import compiled_steps

        compiled = compiled_steps(model, batch_labels.shape[0], compile)
    cache = None if compiled is not None or not use_cache else model.new_cache(batch_labels.shape[0])
    seq = torch.zeros(batch_labels.shape[0], L, dtype=torch.long, device=labels.device)  # (B', L)
    steps = model.step_positions
    ends = [e for _, e in steps]
    stop = L if num_tokens is None else int(num_tokens)
    if stop not in ends:
        raise ValueError(f"num_tokens must be a step boundary {ends}, got {num_tokens}")
    kept = 0
    if prefix is not None:
        prefix = torch.as_tensor(prefix)
        if prefix.dim() != 2 or prefix.is_floating_point() or prefix.shape[0] not in (1, B):
            raise ValueError(f"prefix must be integer ids of shape (B={B} or 1, k), got {prefix.dtype} {list(prefix.shape)}")
        kept = prefix.shape[1]
        if kept and kept not in ends:
            raise ValueError(f"a kept prefix must end at a step boundary {ends}, got {kept} tokens")
        if kept > stop:
            raise ValueError(f"the kept prefix ({kept} tokens) is longer than num_tokens={stop}")
        if prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= model.config.vocab_size):
            raise ValueError(f"prefix ids must be in [0, {model.config.vocab_size})")
        seq[:, :kept] = prefix.to(seq.device).expand(B, kept).repeat(2 if guided else 1, 1)
        if kept and compiled is not None:
            compiled.keep(kept, seq, class_emb)
        elif kept and use_cache:
            model.forward_step(seq, class_emb, 0, kept, cache)  # keys/values of the kept positions, in one call
    for s, (start, end) in enumerate(steps):
        if end <= kept:
            continue
        if start >= stop:
            break
        if compiled is not None:
            logits = compiled.step(s, seq, class_emb)  # (B', n, V)
        elif use_cache:
            logits = model.forward_step(seq, class_emb, start, end, cache)  # (B', n, V)
        else:  # the grouped mask keeps positions < end blind to the unknown tokens after them
            logits = model(seq, batch_labels, drop_labels=False)[:, start:end]  # (B', n, V)
        if guided:
            logits = guided_logits(logits, cfg_value(sp.cfg_schedule, s, len(steps), sp.cfg_scale, sp.cfg_start))  # (B, n, V)
        new = sample_from_logits(logits.reshape(-1, logits.shape[-1]), sp.temperature, sp.top_k, sp.top_p, generator)
        new = new.view(B, end - start)  # (B, n)
        seq[:B, start:end] = new
        if guided:
            seq[B:, start:end] = new
        if callback is not None:
            callback(s, seq[:B, :end], end)
    return seq[:B, :stop].clone()
