"""What a run builds, for any registered family: one place that turns a training config (and, for a generator, its
code set) into a model class and config.

A tokenizer run trains the family whose preset ``model`` names, through the family's
:class:`~restok.models.training.TrainingHook` (ResTok, TiTok single-stage, One-D-Piece, LlamaGen's VQGAN); with
``init_from`` the architecture is the source's. A generator run trains the generator that fits its codes: the
code set records its tokenizer's family, whose hook says how its codes are ordered -- HAR (Sec. 4) on ResTok's
hierarchical levels, vanilla next-token AR on a 1-D sequence (TiTok, One-D-Piece), LlamaGen's GPT with 2-D RoPE on a
grid in raster order (LlamaGen's VQGAN) -- with the preset's sizes, and the code set's length, vocabulary and classes.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.registry import find_preset, model_class
from ..models.har import HARConfig, HARGenerator
from ..models.tokenizer import Tokenizer
from .config import TrainConfig
from .errors import TrainingError

__all__ = ["tokenizer_run", "generator_run", "code_structure", "source_architecture"]

log = logging.getLogger("restok.train")


def _alignment_dims(cfg: TrainConfig, teacher_dim: int) -> dict[str, int]:
    """The alignment heads' sizes a ResTok run needs (0 = none)."""
    lc = cfg.loss
    return {
        "encoder_feature_dim": teacher_dim if lc.use_alignment and lc.encoder_alignment else 0,
        "decoder_feature_dim": teacher_dim if lc.use_alignment and lc.decoder_alignment else 0,
    }


def source_architecture(cls: type[Tokenizer], source: str) -> Any:
    """The config of the trained model at ``source`` (``init_from``), which must be of family ``cls``."""
    from ..models.auto import load_tokenizer

    try:
        src = load_tokenizer(source)
    except Exception as e:  # noqa: BLE001 - any failure to load means the setting cannot be honoured
        raise TrainingError(f"init_from={source!r} cannot be loaded as a tokenizer: {e}") from e
    if type(src) is not cls:
        raise TrainingError(
            f"init_from={source!r} is a {type(src).title} tokenizer but the recipe trains a {cls.title} one: name a "
            f"{type(src).title} preset as the model (e.g. {next(iter(type(src).presets))})"
        )
    return src.config


def tokenizer_run(cfg: TrainConfig, teacher_dim: int = 0) -> tuple[type[Tokenizer], Any]:
    """The tokenizer class and config a run builds: the preset with the overrides (the source's architecture with
    ``init_from``), alignment heads when the family has them and the loss aligns; refused in one line when the family
    cannot train this config."""
    found = find_preset(cfg.model, "tokenizer")
    if found is None:
        raise TrainingError(f"model {cfg.model!r} is not a tokenizer preset")
    cls, preset = found
    hook = cls.training_hook
    if hook is None:
        raise TrainingError(f"the {cls.title} family has no training hook: restok does not train it")
    base = preset
    if cfg.init_from:
        base = source_architecture(cls, cfg.init_from)
        changed = sorted(k for k, v in base.to_dict().items() if preset.to_dict().get(k) != v)
        if changed:
            log.info(
                "init_from=%s: the architecture is the source's (%s differ from %s)", cfg.init_from, changed, cfg.model
            )
    overrides = dict(cfg.model_overrides)
    if hook.alignment:
        overrides.update(_alignment_dims(cfg, teacher_dim))
    elif cfg.loss.use_alignment:
        raise TrainingError(
            f"representation alignment (loss.alignment_weight={cfg.loss.alignment_weight:g}) trains alignment heads, "
            f"which a {cls.title} tokenizer does not have: set loss.alignment_weight=0"
        )
    config = base.replace(**overrides)
    reason = hook.refuse(config, cfg)
    if reason is not None:
        raise TrainingError(reason)
    return cls, config


def code_structure(meta: dict[str, Any]) -> str:
    """How a code set's tokens are ordered: ``hierarchical`` (ResTok's levels), ``sequence`` (a 1-D sequence) or
    ``grid`` (a 2-D grid in raster order), from the tokenizer family it records (older sets: from its config)."""
    family = meta.get("tokenizer_family")
    if family is not None:
        hook = model_class(family).training_hook
        return hook.codes if hook is not None else "sequence"
    config = (meta.get("tokenizer") or {}).get("config") or {}
    return "hierarchical" if "min_tokens" in config else "grid" if "ch_mult" in config else "sequence"


def generator_run(cfg: TrainConfig, meta: dict[str, Any]) -> tuple[type[HARGenerator], HARConfig]:
    """The generator class and config that fit a code set: the preset's sizes (the ``init_from`` source's
    architecture when given); the set's length, vocabulary and class count; the groups of its code structure."""
    from ..models.llamagen_gpt import LlamaGenGPT

    found = find_preset(cfg.model, "generator")
    if found is None:
        raise TrainingError(f"model {cfg.model!r} is not a generator preset")
    L = int(meta["num_tokens"])
    overrides: dict[str, Any] = dict(cfg.model_overrides)
    overrides.update(num_tokens=L, vocab_size=meta["codebook_size"], num_classes=max(1, meta["num_classes"]))
    structure = code_structure(meta)
    if cfg.generator == "ar" and structure == "hierarchical":
        structure = "sequence"  # Table 5's vanilla AR on ResTok's codes
    elif cfg.generator == "har" and structure != "hierarchical":
        raise TrainingError(
            f"generator=har predicts ResTok's hierarchical levels; these codes are a {structure} "
            f"({meta.get('tokenizer_family')}): use generator=auto or ar"
        )
    cls = LlamaGenGPT if structure == "grid" else HARGenerator
    if structure == "hierarchical":  # HAR: the first levels one by one, then a level per step (Sec. 4)
        if "ar_tokens" not in cfg.model_overrides:
            overrides["ar_tokens"] = min(meta["tokenizer"]["config"].get("min_tokens", 4), L)
    else:
        overrides.update(ar_tokens=L, num_special_tokens=0)  # every token one by one (App. B's vanilla AR)
    try:
        config = found[1].replace(**overrides)
        if cls is LlamaGenGPT:
            LlamaGenGPT.check_config(config)
    except ValueError as e:
        family = meta.get("tokenizer_family")
        raise TrainingError(f"the {structure} codes of {family} need another generator: {e}") from None
    if cfg.init_from:
        return cls, _source_generator(cls, config, cfg)
    return cls, config


def _source_generator(cls: type[HARGenerator], fitted: HARConfig, cfg: TrainConfig) -> HARConfig:
    """The ``init_from`` generator's architecture, which must be of the class the codes call for and read the same
    tokens, vocabulary and classes."""
    from ..models.auto import load_generator

    try:
        src = load_generator(cfg.init_from)
    except Exception as e:  # noqa: BLE001 - any failure to load means the setting cannot be honoured
        raise TrainingError(f"init_from={cfg.init_from!r} cannot be loaded as a generator: {e}") from e
    if type(src) is not cls:
        raise TrainingError(
            f"init_from={cfg.init_from!r} is a {type(src).title} generator; these codes train a {cls.title}"
        )
    keys = ("num_tokens", "vocab_size", "num_classes", "ar_tokens")
    differ = [
        f"{k} {getattr(src.config, k)} vs {getattr(fitted, k)}"
        for k in keys
        if getattr(src.config, k) != getattr(fitted, k)
    ]
    if differ:
        raise TrainingError(
            f"init_from={cfg.init_from!r} does not read these codes: {', '.join(differ)} (source vs code set)"
        )
    log.info("init_from=%s: the architecture is the source's", cfg.init_from)
    return src.config.replace(**cfg.model_overrides)
