"""Compiled inference paths: the HAR decode step and the tokenizer's decode under ``torch.compile``.

Opt-in (``gen.generate(..., compile=True)``, ``tok.decode(ids, compile=True)``); the eager path is the reference
and gives the same tokens. What makes the step compile well (gpt-fast's recipe, with restok's explicit cache):

* one graph per step *shape*: the positions and the mask rows of a step are tensors made once, so the 128 calls of
  vanilla AR share one graph and the 9 of HAR-128 need 9 (``dynamic=False``; no automatic dynamic shapes);
* ``fullgraph=True``: a graph break is an error, not a silent slow path;
* a static KV cache kept here per (batch, dtype, device) and reused by every call, its addresses fixed
  (``mark_static_address``) so that on CUDA ``mode="reduce-overhead"`` records each step once as a CUDA graph and
  replays it (the cache's in-place writes are then allowed);
* nothing in the step reads a value back to the host; sampling (``torch.multinomial`` with the caller's generator,
  which a graph cannot take) runs eagerly between the compiled steps, also without host synchronisation.

Compiled functions and caches live in a private attribute of the model (they are not weights; ``state_dict`` and
saving ignore them); moving or casting the model gives new keys, so stale graphs are never replayed.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["compile_mode", "CompiledSteps", "compiled_steps", "compiled_decoder"]


def compile_mode(device: torch.device, mode: bool | str) -> str:
    """The ``torch.compile`` mode for ``compile=mode``: ``True`` means CUDA graphs on CUDA, plain Inductor elsewhere."""
    if isinstance(mode, str):
        if mode not in ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
            raise ValueError(f"unknown compile mode {mode!r}; use True, 'default', 'reduce-overhead' or 'max-autotune'")
        return mode
    return "reduce-overhead" if device.type == "cuda" else "default"


_GRAPHS_ASKED = {"steps": 0, "decode": 0}  # graphs each compiled function may need, over every model and setting


def _allow_graphs(kind: str, n: int) -> None:
    """Dynamo's recompile limit (8 by default) counts every graph of one function -- over all models, batch sizes and
    autocast states -- so it must admit each one this module asks for (a hit is an error under ``fullgraph``)."""
    _GRAPHS_ASKED[kind] += n
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(getattr(cfg, name), *_GRAPHS_ASKED.values()))


def _autocast_state(device: torch.device) -> tuple[bool, torch.dtype]:
    """The ambient autocast setting, which a graph is traced under (a new setting is a new graph)."""
    return torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type)


def _compile_kwargs(mode: str, backend: str) -> dict[str, Any]:
    """``torch.compile`` arguments: whole graphs, static shapes, and (Inductor) low-precision intermediates rounded
    where eager rounds them, so that bf16 autocast samples the eager tokens too."""
    kwargs: dict[str, Any] = {"fullgraph": True, "dynamic": False, "backend": backend}
    if backend == "inductor":
        from torch._inductor import list_mode_options

        kwargs["options"] = {**list_mode_options(mode), "emulate_precision_casts": True}  # the mode, as options
    return kwargs


def _store(model: torch.nn.Module) -> dict[Any, Any]:
    """The model's private store of compiled functions and static buffers."""
    store = model.__dict__.get("_restok_compiled")
    if store is None:
        store = model.__dict__["_restok_compiled"] = {}
    return store


class CompiledSteps:
    """The HAR step of one generator compiled for one (batch, dtype, device): a static KV cache, per-step position
    and mask tensors, and the compiled ``_step`` that fills the cache and returns logits."""

    def __init__(self, model: Any, batch: int, mode: str, backend: str = "inductor") -> None:
        self.model = model
        device = model.device
        self.cuda_graphs = device.type == "cuda" and mode == "reduce-overhead"
        self.cache = model.new_cache(batch)
        if self.cuda_graphs:
            for t in (*self.cache.keys, *self.cache.values):
                torch._dynamo.mark_static_address(t)
        steps = model.step_positions
        self.positions = [torch.arange(a, b, device=device) for a, b in steps]  # made once: not a graph input that varies
        self.masks = [model._mask[a:b].contiguous() for a, b in steps]
        self.prefill: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        _allow_graphs("steps", len({b - a for a, b in steps}) + 2)  # step shapes, plus kept prefixes' ones
        model._rope_on(device)  # before tracing: the step must not move its table
        self.fn: Callable[..., torch.Tensor] = torch.compile(model._step, **_compile_kwargs(mode, backend))

    def reset(self) -> None:
        """Zero the cache (its stale entries are masked anyway; zeroing keeps every call's inputs identical)."""
        for t in (*self.cache.keys, *self.cache.values):
            t.zero_()

    def step(self, s: int, tokens: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
        """Logits (B, n, V) of step ``s``; a fresh tensor (a CUDA graph's output is overwritten by its next replay)."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(tokens, class_emb, self.positions[s], self.masks[s], self.cache)
        return out.clone() if self.cuda_graphs else out

    def keep(self, k: int, tokens: torch.Tensor, class_emb: torch.Tensor) -> None:
        """Keys and values of a kept prefix's first ``k`` positions, in one call."""
        if k not in self.prefill:
            self.prefill[k] = (torch.arange(k, device=tokens.device), self.model._mask[:k].contiguous())
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        self.fn(tokens, class_emb, *self.prefill[k], self.cache)


def compiled_steps(model: Any, batch: int, mode: bool | str = True, backend: str = "inductor") -> CompiledSteps:
    """The :class:`CompiledSteps` of ``model`` for this batch size, made on first use and reused after."""
    mode = compile_mode(model.device, mode)
    key = ("steps", batch, model.dtype, model.device, mode, backend, _autocast_state(model.device))
    store = _store(model)
    if key not in store:
        store[key] = CompiledSteps(model, batch, mode, backend)
    steps = store[key]
    steps.reset()
    return steps


def compiled_decoder(model: Any, mode: bool | str = True, backend: str = "inductor") -> Callable[..., torch.Tensor]:
    """``model._decode_ids`` compiled (one graph per batch size and prefix length), made on first use."""
    mode = compile_mode(model.device, mode)
    key = ("decode", model.device, model.dtype, mode, backend, _autocast_state(model.device))
    store = _store(model)
    if key not in store:
        _allow_graphs("decode", 2 * len(model.prefix_lengths))  # prefix lengths x a few batch sizes
        model.decoder._rope_on(model.device)  # before tracing: no move inside the graph
        fn = torch.compile(model._decode_ids, **_compile_kwargs(mode, backend))
        cuda_graphs = model.device.type == "cuda" and mode == "reduce-overhead"

        def run(ids: torch.Tensor, k: int, pixel_dtype: torch.dtype) -> torch.Tensor:
            if cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            out = fn(ids, k, pixel_dtype)
            return out.clone() if cuda_graphs else out

        store[key] = run
    return store[key]
