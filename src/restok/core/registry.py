"""The model registry: every family of models restok can build, load and run, by name (timm's ``register_model``,
transformers' auto mappings).

A family is one model class that declares what it is -- ``family`` (its name), ``kind`` (``tokenizer`` or
``generator``), ``config_class``, named ``presets``, the checkpoint keys it may drop (``ignored_prefixes``) and the
foreign checkpoint ``layouts`` it reads (an official release's ``config.json``) -- and registers itself with
:func:`register_model`. Loading (:mod:`restok.hub`), the command line and evaluation ask the registry which class a
checkpoint or a name belongs to; none of them imports a family, so adding one is one module and one entry in
:mod:`restok.models`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KINDS",
    "DEFAULT_FAMILIES",
    "Layout",
    "register_model",
    "model_class",
    "model_classes",
    "family_titles",
    "find_preset",
    "identify_checkpoint",
    "check_compatible",
    "RegistryError",
]

KINDS = ("tokenizer", "generator")
# The family of a restok-format file that names none (files written before there was more than one per kind).
DEFAULT_FAMILIES = {"tokenizer": "restok", "generator": "har"}


class RegistryError(ValueError):
    """A name or checkpoint that no registered family owns, or a family declared wrongly."""


@dataclass(frozen=True)
class Layout:
    """A checkpoint layout other than restok's own: how to recognise it (from its config dict, which may be None,
    and its weight names) and how to read its config into the family's config class."""

    name: str
    matches: Callable[[Mapping[str, Any] | None, Collection[str]], bool]
    # How the config is read: from the config dict alone, or (``from_weights``) from the dict -- None for bare weights
    # --
    # and the weights' {name: shape}, for layouts whose releases ship bare weights or a config that does not say every
    # size.
    read_config: Callable[[Mapping[str, Any]], Any] | None = None
    from_weights: Callable[[Mapping[str, Any] | None, Mapping[str, tuple[int, ...]], str], Any] | None = None

    def __post_init__(self) -> None:
        if (self.read_config is None) == (self.from_weights is None):
            raise ValueError(f"layout {self.name!r} needs exactly one of read_config and from_weights")


_REGISTRY: dict[str, type] = {}
_DECLARED = ("family", "title", "kind", "config_class", "presets", "ignored_prefixes", "layouts")


def register_model(cls: type) -> type:
    """Class decorator: add a model family to the registry (it must declare every attribute of :data:`_DECLARED`)."""
    missing = [a for a in _DECLARED if not hasattr(cls, a)]
    if missing:
        raise RegistryError(f"{cls.__name__} cannot be registered: it does not declare {missing}")
    if cls.kind not in KINDS:
        raise RegistryError(f"{cls.__name__}.kind must be one of {KINDS}, got {cls.kind!r}")
    other = _REGISTRY.get(cls.family)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise RegistryError(f"model family {cls.family!r} is registered twice ({other.__name__} and {cls.__name__})")
    _REGISTRY[cls.family] = cls
    return cls


def model_classes(kind: str | None = None) -> list[type]:
    """The registered model classes (of one kind), in registration order."""
    return [c for c in _REGISTRY.values() if kind is None or c.kind == kind]


def family_titles(kind: str | None = None) -> str:
    """The registered families (of one kind) by their usual names, for help texts: ``"ResTok, TiTok, ..."``."""
    return ", ".join(c.title for c in model_classes(kind))


def model_class(family: str) -> type:
    """The class of a registered family, or a RegistryError naming the known ones."""
    if family not in _REGISTRY:
        raise RegistryError(f"unknown model family {family!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[family]


def find_preset(name: str, kind: str | None = None) -> tuple[type, Any] | None:
    """``(class, config)`` of the preset called ``name`` (of one kind), or None."""
    for cls in model_classes(kind):
        if name in cls.presets:
            return cls, cls.presets[name]
    return None


def identify_checkpoint(
    config: Mapping[str, Any] | None, keys: Collection[str] = ()
) -> tuple[type, Layout | None] | None:
    """The family a checkpoint belongs to, and the foreign layout it is in (None for restok's own format), from its
    config dict and weight names; None when no registered family recognises it."""
    if config and config.get("format") == "restok":
        kind = config.get("kind")
        family = config.get("family") or DEFAULT_FAMILIES.get(str(kind))
        cls = _REGISTRY.get(str(family))
        return (cls, None) if cls is not None and cls.kind == kind else None
    for cls in model_classes():
        for layout in cls.layouts:
            if layout.matches(config, keys):
                return cls, layout
    return None


def check_compatible(tokenizer: Any, generator: Any) -> None:
    """Raise a ValueError unless ``generator`` samples ``tokenizer``'s tokens (same codebook and token count), whatever
    their families."""
    if generator.vocab_size != tokenizer.codebook_size or generator.num_tokens != tokenizer.num_tokens:
        raise ValueError(
            f"generator ({generator.vocab_size} codes, {generator.num_tokens} tokens) does not match the tokenizer "
            f"({tokenizer.codebook_size} codes, {tokenizer.num_tokens} tokens): use the tokenizer the generator was "
            "trained on"
        )
