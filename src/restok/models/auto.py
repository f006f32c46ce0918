"""Loading any registered model by name or path, as transformers' ``AutoModel`` does: the checkpoint says which
family it is (this package's ``config.json``, or a foreign layout recognised by a family's registry entry), and that
family's class loads it. Also ``restok convert`` (any checkpoint written in this package's format) and the check that
a generator samples a tokenizer's tokens."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.registry import DEFAULT_FAMILIES, KINDS, check_compatible, find_preset, identify_checkpoint, model_class
from ..hub.files import CheckpointError, read_config_file, read_state_dict_keys
from ..hub.resolve import resolve_checkpoint

__all__ = [
    "model_class_of",
    "load_model",
    "load_tokenizer",
    "load_generator",
    "load_pair",
    "check_compatible",
    "convert_checkpoint",
    "ConvertRequest",
    "run_convert",
]


def _refuse_preset(src: str, kind: str | None) -> None:
    """A preset's name is an untrained model, never something to load (unless a file of that name exists)."""
    if not Path(src).exists() and find_preset(src, kind) is not None:
        raise ValueError(f"{src!r} is an untrained preset; pass a checkpoint directory, file or Hub id")


def model_class_of(src: str | os.PathLike, kind: str | None = None, config: Any = None, **hub: Any) -> type:
    """The registered class that loads the checkpoint ``src`` (of ``kind`` when given), from its config and weight
    names; a CheckpointError when no family (of that kind) owns it."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    found = resolve_checkpoint(str(src), **hub)
    raw = (
        read_config_file(config)
        if isinstance(config, (str, os.PathLike))
        else dict(config)
        if isinstance(config, Mapping)
        else found.config
    )
    keys = read_state_dict_keys(found.weights)
    hit = identify_checkpoint(raw, keys) or identify_checkpoint(raw)
    if hit is None:
        if kind is not None and raw is None:  # a bare weights file with no config: the kind's original family
            return model_class(DEFAULT_FAMILIES[kind])
        what = f"a {kind}" if kind else "a tokenizer or a generator"
        raise CheckpointError(f"cannot tell which model {src} is: no registered family recognises it as {what}")
    if kind is not None and hit[0].kind != kind:
        raise CheckpointError(f"{src} is a {hit[0].kind} checkpoint, not a {kind}")
    return hit[0]


def load_model(src: str | os.PathLike, kind: str | None = None, **kwargs: Any) -> Any:
    """Load any registered model (of ``kind`` when given); ``kwargs`` as ``from_pretrained``'s (``device``,
    ``torch_dtype``, ``config``, ``revision``, ``local_files_only``, ...)."""
    hub = {
        k: kwargs[k]
        for k in ("revision", "cache_dir", "force_download", "proxies", "token", "local_files_only")
        if k in kwargs
    }
    try:
        cls = model_class_of(src, kind, kwargs.get("config"), **hub)
    except CheckpointError:
        _refuse_preset(str(src), kind)
        raise
    return cls.from_pretrained(src, **kwargs)


def load_tokenizer(src: str | os.PathLike, **kwargs: Any) -> Any:
    """Load a tokenizer of any registered family (embedded name, folder, file or Hub id)."""
    return load_model(src, "tokenizer", **kwargs)


def load_generator(src: str | os.PathLike, **kwargs: Any) -> Any:
    """Load a generator of any registered family (embedded name, folder, file or Hub id)."""
    return load_model(src, "generator", **kwargs)


def load_pair(tokenizer: str | os.PathLike, generator: str | os.PathLike, **kwargs: Any) -> tuple[Any, Any]:
    """``(generator, tokenizer)``, refusing a pair whose vocabularies or token counts differ."""
    gen, tok = (load_model(src, kind, **kwargs) for src, kind in ((generator, "generator"), (tokenizer, "tokenizer")))
    check_compatible(tok, gen)
    return gen, tok


def convert_checkpoint(
    src: str, dst: str | os.PathLike, kind: str = "auto", config: Any = None
) -> tuple[str, list[str]]:
    """Write an official (or any loadable) checkpoint in this package's format at ``dst``; returns ``(kind, dropped
    keys)``."""
    cls = model_class_of(src, None if kind == "auto" else kind, config)
    model = cls.from_pretrained(src, config=config)
    model.save_pretrained(dst)
    return cls.kind, list(model.provenance.dropped_keys)


@dataclass(frozen=True, kw_only=True)
class ConvertRequest:
    """``restok convert``: an official (or any loadable) checkpoint rewritten in this package's format."""

    src: str
    dst: Path
    kind: str = "auto"
    config: str | None = None


def run_convert(req: ConvertRequest) -> tuple[str, dict[str, int]]:
    """Convert the request's checkpoint; returns its kind and the training-only tensors dropped, counted by group."""
    kind, dropped = convert_checkpoint(req.src, req.dst, kind=req.kind, config=req.config)
    groups: dict[str, int] = {}
    for k in dropped:
        head = k.split(".")[0] if not k.startswith("decoder.") else k
        groups[head] = groups.get(head, 0) + 1
    return kind, dict(sorted(groups.items()))
