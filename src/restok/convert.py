"""``restok convert``: an official checkpoint (Hub layout, or a raw training file with its run's config) written
in this package's format, naming the training-only tensors it dropped."""

from __future__ import annotations

import os
from typing import Any, Mapping

from .checkpoint import CheckpointError, read_config_file, read_state_dict, resolve_checkpoint
from .generator import HARGenerator
from .official import checkpoint_kind
from .tokenizer import ResTok

__all__ = ["convert_checkpoint"]


def convert_checkpoint(src: str, dst: str | os.PathLike, kind: str = "auto", config: Any = None) -> tuple[str, list[str]]:
    """Convert an official (or our) checkpoint into this package's format at ``dst``; returns ``(kind, dropped keys)``."""
    if kind == "auto":
        found = resolve_checkpoint(str(src))
        raw = found.config
        if isinstance(config, (str, os.PathLike)):
            raw = read_config_file(config)
        elif isinstance(config, Mapping):
            raw = dict(config)
        kind = checkpoint_kind(raw, read_state_dict(found.weights).keys()) or ""
        if kind not in ("tokenizer", "generator"):
            raise CheckpointError(f"cannot tell whether {src} is a tokenizer or a generator; pass kind explicitly")
    cls = ResTok if kind == "tokenizer" else HARGenerator
    model = cls.from_pretrained(src, config=config)
    model.save_pretrained(dst)
    return kind, list(model.provenance.dropped_keys)
