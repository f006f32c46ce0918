"""Functions of restok's 2026-12-02 API that later versions replaced, kept for users through the one door
(:mod:`restok._compat`): each answers as it did, by way of what replaced it, and says so once with a
DeprecationWarning. restok's own code never calls them."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .core.registry import DEFAULT_FAMILIES, identify_checkpoint, model_class
from .hub.files import CheckpointError
from .sampling.compiled import CompiledDecoder, CompiledSampler

__all__ = ["CompiledSteps", "compiled_steps", "compiled_decoder", "checkpoint_kind", "config_from_record"]


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is an old spelling: use {new}", DeprecationWarning, stacklevel=3)


# The compiled sampling steps of one batch size: renamed when sampling state left the model.
CompiledSteps = CompiledSampler


def compiled_steps(model: Any, batch: int, mode: bool | str = True, backend: str = "inductor") -> CompiledSampler:
    """The compiled steps of ``model`` for ``batch`` rows (now :class:`restok.sampling.CompiledSampler`)."""
    _warn("restok.compiled.compiled_steps(model, batch)", "restok.sampling.CompiledSampler(model, batch)")
    return CompiledSampler(model, batch, mode, backend)


def compiled_decoder(model: Any, mode: bool | str = True, backend: str = "inductor") -> Callable[..., torch.Tensor]:
    """The compiled decode of ``model`` (now :class:`restok.sampling.CompiledDecoder`): ``fn(ids, k, pixel_dtype)``."""
    _warn("restok.compiled.compiled_decoder(model)", "restok.sampling.CompiledDecoder(model)")
    return CompiledDecoder(model, mode, backend)


def checkpoint_kind(cfg: Mapping[str, Any] | None, keys: Any = None) -> str | None:
    """``"tokenizer"``, ``"generator"`` or None, from a config dict and weight names (now the registry's
    :func:`restok.core.registry.identify_checkpoint`)."""
    _warn("restok.official.checkpoint_kind(cfg, keys)", "restok.core.registry.identify_checkpoint(cfg, keys)")
    hit = identify_checkpoint(cfg, set(keys or ())) or identify_checkpoint(cfg)
    return None if hit is None else hit[0].kind


def config_from_record(kind: str, raw: Mapping[str, Any] | None, where: str) -> Any:
    """The typed config of a ``kind`` model from a ``config.json`` of restok's format or an official layout (now each
    family's ``read_config``)."""
    _warn("restok.official.config_from_record(kind, raw, where)", "ModelClass.read_config(raw, layout, where)")
    if raw is None:
        raise CheckpointError(f"no config.json beside {where}; pass config= explicitly")
    hit = identify_checkpoint(raw)
    cls, layout = hit if hit is not None else (model_class(DEFAULT_FAMILIES[kind]), None)
    if cls.kind != kind:
        raise CheckpointError(f"the config beside {where} does not describe a {kind}")
    return cls.read_config(raw, layout, where)
