"""Compiled inference: the HAR decode step and the tokenizer's decode under ``torch.compile``, as objects the caller
owns (gpt-fast's ``decode_one_token`` recipe, with restok's explicit cache).

Opt-in (``gen.generate(..., compile=True)`` or ``sampler=CompiledSampler(gen, batch)``, ``tok.decode(ids,
compile=True)``); the eager path is the reference and gives the same tokens. What makes the step compile well:

* a *free function* of explicit state is compiled (:func:`decode_step`, :func:`decode_tokens`), never a model method
  and never state stored on the model: the sampler object holds the static KV cache and the per-step tensors;
* one graph per step *shape*: the positions and the mask rows of a step are tensors made once, so the 128 calls of
  vanilla AR share one graph and the steps of HAR-128 need one per distinct step length (``dynamic=False``);
* ``fullgraph=True``: a graph break is an error, not a silent slow path;
* the static cache's addresses are fixed (``mark_static_address``) so that on CUDA ``mode="reduce-overhead"`` records
  each step once as a CUDA graph and replays it (the cache's in-place writes are then allowed);
* nothing in the step reads a value back to the host; sampling (``torch.multinomial`` with the caller's generator,
  which a graph cannot take) runs eagerly between the compiled steps, also without host synchronisation.

Compiled code is cached by ``torch.compile`` per function, so a second sampler or decoder for the same shapes
reuses the graphs; a sampler keeps its cache (and, on CUDA, its recorded graphs) for every call it serves.

Axes: B batch (2B with guidance), L tokens, n positions of one step, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .protocol import KVCache, Sampleable

__all__ = ["COMPILE_MODES", "compile_mode", "decode_step", "decode_tokens", "CompiledSampler", "CompiledDecoder"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(device: torch.device, mode: bool | str) -> str:
    """The ``torch.compile`` mode for ``compile=mode``: ``True`` means CUDA graphs on CUDA, plain Inductor elsewhere."""
    if isinstance(mode, str):
        if mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {mode!r}; use True, 'default', 'reduce-overhead' or 'max-autotune'")
        return mode
    return "reduce-overhead" if device.type == "cuda" else "default"


def decode_step(
    model: Sampleable,
    tokens: torch.Tensor,
    class_emb: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor,
    cache: KVCache,
) -> torch.Tensor:
    """One cached model call, a function of its inputs alone: tokens (B, L), class embeddings (B, 1, D), the step's
    positions (n,) and mask rows (n, L) -> logits (B, n, V). What :class:`CompiledSampler` compiles."""
    return model.step_logits(tokens, class_emb, positions, mask, cache)


def decode_tokens(model: Any, ids: torch.Tensor, k: int, pixel_dtype: torch.dtype) -> torch.Tensor:
    """Checked ids (B, k) -> pixels (B, 3, H, W) through ``model.decode_ids``. What :class:`CompiledDecoder`
    compiles."""
    return model.decode_ids(ids, k, pixel_dtype)


_GRAPHS: dict[str, dict[Any, int]] = {"steps": {}, "decode": {}}  # graphs each compiled function may need, by use


def _allow_graphs(kind: str, key: Any, n: int) -> None:
    """Dynamo's recompile limit (8 by default) counts every graph of one function -- over all models, batch sizes and
    autocast states -- so it must admit each one this module asks for (a hit is an error under ``fullgraph``)."""
    _GRAPHS[kind][key] = n
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(getattr(cfg, name), *(sum(d.values()) for d in _GRAPHS.values())))


def _compile(fn: Callable[..., torch.Tensor], mode: str, backend: str) -> Callable[..., torch.Tensor]:
    """``torch.compile`` of ``fn``: whole graphs, static shapes, and (Inductor) low-precision intermediates rounded
    where
    eager rounds them, so that bf16 autocast samples the eager tokens too."""
    kwargs: dict[str, Any] = {"fullgraph": True, "dynamic": False, "backend": backend}
    if backend == "inductor":
        from torch._inductor import list_mode_options

        kwargs["options"] = {**list_mode_options(mode), "emulate_precision_casts": True}  # the mode, as options
    return torch.compile(fn, **kwargs)


def _model_key(model: Any) -> tuple[Any, ...]:
    """What tells one model's graphs from another's in the recompile budget."""
    return (id(model), model.dtype, str(model.device))


class CompiledSampler:
    """The compiled decode step of one generator for one batch size (with guidance: twice the number of samples): a
    static KV cache, the per-step position and mask tensors, and the compiled :func:`decode_step`. Pass it to
    ``generate(..., sampler=...)`` for every batch of that size; it serves one sampling run at a time."""

    def __init__(self, model: Sampleable, batch: int, mode: bool | str = True, backend: str = "inductor") -> None:
        device = model.device
        mode = compile_mode(device, mode)
        self.model, self.batch = model, batch
        self.cuda_graphs = device.type == "cuda" and mode == "reduce-overhead"
        self.cache = model.new_cache(batch)
        if self.cuda_graphs:
            for t in self.cache.tensors():
                torch._dynamo.mark_static_address(t)
        steps = model.step_positions
        self.positions = [
            torch.arange(a, b, device=device) for a, b in steps
        ]  # made once: not a graph input that varies
        self.masks = [model.step_mask(a, b).contiguous() for a, b in steps]
        self.prefill: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        shapes = len({b - a for a, b in steps})
        _allow_graphs(
            "steps", (*_model_key(model), batch), 2 * shapes + 4
        )  # step shapes (plain and autocast), prefixes
        self.fn = _compile(decode_step, mode, backend)

    def check(self, model: Sampleable, batch: int) -> None:
        """Raise a ValueError unless this sampler serves ``model`` at ``batch`` sequences (on its device and dtype)."""
        if model is not self.model or batch != self.batch:
            raise ValueError(
                f"this CompiledSampler was made for another model or for a batch of {self.batch} sequences "
                f"(this run has {batch}; with guidance, twice the number of samples)"
            )
        t = self.cache.keys[0]
        if t.device != model.device or t.dtype != model.dtype:
            raise ValueError("the model was moved or cast after its CompiledSampler was made; make a new one")

    def reset(self) -> None:
        """Zero the cache (its stale entries are masked anyway; zeroing keeps every call's inputs identical)."""
        for t in self.cache.tensors():
            t.zero_()

    def _run(
        self, tokens: torch.Tensor, class_emb: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(self.model, tokens, class_emb, positions, mask, self.cache)  # (B, n, V)
        return out.clone() if self.cuda_graphs else out  # a CUDA graph's output is overwritten by its next replay

    def step(self, s: int, tokens: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
        """Logits (B, n, V) of step ``s``."""
        return self._run(tokens, class_emb, self.positions[s], self.masks[s])

    def keep(self, k: int, tokens: torch.Tensor, class_emb: torch.Tensor) -> None:
        """Keys and values of a kept prefix's first ``k`` positions, in one call."""
        if k not in self.prefill:
            self.prefill[k] = (torch.arange(k, device=tokens.device), self.model.step_mask(0, k).contiguous())
        self._run(tokens, class_emb, *self.prefill[k])


class CompiledDecoder:
    """The compiled :func:`decode_tokens` of one tokenizer (one graph per batch size and prefix length)."""

    def __init__(self, model: Any, mode: bool | str = True, backend: str = "inductor") -> None:
        mode = compile_mode(model.device, mode)
        self.model = model
        self.cuda_graphs = model.device.type == "cuda" and mode == "reduce-overhead"
        _allow_graphs("decode", _model_key(model), 2 * len(model.prefix_lengths))  # prefix lengths x a few batch sizes
        self.fn = _compile(decode_tokens, mode, backend)

    def __call__(self, ids: torch.Tensor, k: int, pixel_dtype: torch.dtype) -> torch.Tensor:
        """Pixels (B, 3, H, W) of checked ids (B, k)."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(self.model, ids, k, pixel_dtype)
        return out.clone() if self.cuda_graphs else out
