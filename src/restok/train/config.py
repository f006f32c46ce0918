"""Training configs: typed dataclasses, named recipes (the paper's and tiny CPU ones), YAML files and
``key=value`` overrides.

The paper's recipes carry every number of the official runs (spec §2.4, §3.2): AdamW (0.9, 0.95), lr 1e-4,
warm-up 5k then cosine to 1e-5, batch 256, EMA 0.9999; tokenizer wd 1e-4 / clip 10 / GAN from step 20k;
generator wd 0.05 / clip 1 / bf16.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.fields import Config, check_field_types, setting
from ..runtime.inputs import load_yaml, read_text_input
from .ablations import ablation_settings
from .losses import TokenizerLossConfig

__all__ = ["OptimConfig", "TrainConfig", "RECIPES", "load_train_config", "apply_overrides"]


@dataclass(frozen=True)
class OptimConfig(Config):
    """AdamW + linear warm-up + cosine decay (spec §2.4)."""

    lr: float = setting(1e-4, gt=0, le=10)
    betas: tuple[float, float] = setting((0.9, 0.95), ge=0, lt=1)
    weight_decay: float = setting(1e-4, ge=0, le=10)
    warmup_steps: int = setting(5_000, ge=0, le=10**12)
    end_lr: float = setting(1e-5, ge=0, le=10)
    grad_clip: float = setting(10.0, ge=0)  # 0 = no clipping
    # the fused AdamW kernel (one pass per tensor; ~4x the per-tensor loop's speed on CPU, the same update up
    # to float rounding); false = PyTorch's reference per-tensor loop
    fused: bool = True

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.lr <= 0 or self.end_lr < 0 or self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"invalid optimizer settings {self}")


@dataclass(frozen=True)
class TrainConfig(Config):
    """One training run. ``kind`` is ``tokenizer`` or ``generator``; ``model`` a preset name."""

    config_name = "training"

    kind: str = "tokenizer"
    model: str = "restok-tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    batch_size: int = setting(8, ge=1, le=2**24)  # global batch, over all processes and accumulation steps
    grad_accum: int = setting(1, ge=1, le=2**16)
    max_steps: int = setting(1_000, ge=1, le=10**12)
    seed: int = setting(0, ge=0, le=2**63 - 1)
    mixed_precision: str = "no"  # no | bf16 | fp16
    ema_decay: float = setting(0.9999, ge=0, lt=1)
    optimizer: OptimConfig = field(default_factory=OptimConfig)
    disc_optimizer: OptimConfig = field(default_factory=OptimConfig)  # tokenizer GAN heads
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)  # tokenizer only
    min_crop: float = setting(0.8, gt=0, le=1)  # random resized crop fraction (ADM random_crop_arr 0.8-1.0)
    flip: bool = True
    save_every: int = setting(5_000, ge=1, le=10**12)
    keep_checkpoints: int = setting(2, ge=1, le=10**6)  # the newest N checkpoints are kept ...
    keep_steps: tuple[int, ...] = setting(
        (), ge=1, le=10**12
    )  # ... and these, always (the released generator used the tokenizer's 750k EMA)
    log_every: int = setting(50, ge=1, le=10**12)
    image_every: int = setting(5_000, ge=1, le=10**12)  # reconstruction / sample grids with the EMA weights
    num_workers: int = setting(0, ge=0, le=1024)
    distributed: str = "ddp"  # ddp | fsdp (restok shards with FSDP2 itself; see engine.shard_model)
    compile: bool = False  # torch.compile the model
    grad_checkpointing: bool = False  # activation checkpointing in the transformer blocks
    trackers: tuple[str, ...] = ("tensorboard", "wandb")  # used when installed
    tokenizer: str | None = None  # generator runs: tokenizer to decode sample grids (default: the codes' own)
    # Validation during tokenizer training (official trainer: EMA weights every 50k steps): PSNR, SSIM, codebook
    # usage/entropy of the first ``eval_images`` held-out images of ``eval_data`` through the evaluation transform,
    # and rFID when ``eval_inception`` names an FID Inception file. 0 = off.
    eval_every: int = setting(0, ge=0, le=10**12)
    eval_images: int = setting(1_000, ge=1, le=10**9)
    eval_data: str | None = None
    eval_inception: str | None = None
    eval_batch_size: int = setting(32, ge=1, le=2**20)
    # Remedy for codebook collapse (tokenizer runs; off in the official recipes): a code that no process has chosen
    # for this many steps is restarted at one of the step's encoder outputs (restok.train.codebook). 0 = off. The
    # official remedy, the entropy term, is ``model_overrides: {entropy_loss_ratio: ...}``.
    restart_dead_codes: int = setting(0, ge=0, le=10**12)
    # Fine-tuning: start from a trained model's weights (a run's ``final/``, a file, an official checkpoint or a Hub
    # id, as ``from_pretrained`` takes them) instead of a fresh initialisation; see train.loop.load_initial_weights.
    init_from: str | None = None
    tf32: bool = True  # TF32 matmuls and cuDNN convolutions on CUDA, as the official scripts (ignored elsewhere)
    # A named ablation of the paper (train.ablations: table2-1 ... table5-ar), applied to the recipe before the
    # run's own overrides; recorded here so that a run says which it is.
    ablation: str = ""
    # Generator runs: the generator that fits the codes (auto: HAR on ResTok's levels, vanilla AR on a 1-D sequence,
    # LlamaGen's GPT on a grid), or forced: har | ar (Table 5 on the same codes).
    generator: str = "auto"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.kind not in ("tokenizer", "generator"):
            raise ValueError(f"kind must be 'tokenizer' or 'generator', got {self.kind!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.distributed not in ("ddp", "fsdp"):
            raise ValueError(f"distributed must be ddp or fsdp, got {self.distributed!r}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_steps < 1:
            raise ValueError("batch_size, grad_accum and max_steps must be >= 1")
        if self.save_every < 1 or self.log_every < 1 or self.image_every < 1 or self.keep_checkpoints < 1:
            raise ValueError("save_every, log_every, image_every and keep_checkpoints must be >= 1")
        if self.eval_every < 0 or self.eval_images < 1 or self.eval_batch_size < 1:
            raise ValueError("eval_every must be >= 0 (0 = off), eval_images and eval_batch_size >= 1")
        if self.restart_dead_codes < 0:
            raise ValueError(f"restart_dead_codes must be >= 0 steps (0 = off), got {self.restart_dead_codes}")
        if self.restart_dead_codes and self.kind != "tokenizer":
            raise ValueError("restart_dead_codes restarts a tokenizer's codebook; it does not apply to generator runs")
        if self.generator not in ("auto", "har", "ar"):
            raise ValueError(f"generator must be auto, har or ar, got {self.generator!r}")
        if self.ablation:
            ablation_settings(self.ablation, self.kind)  # known, and of this kind of run
        self._check_model()

    def _check_model(self) -> None:
        """The model must be a preset of the run's kind (a tokenizer run cannot train a generator preset)."""
        from .. import models as _registered  # noqa: F401 - every family's presets in the registry
        from ..core.registry import find_preset

        found = find_preset(self.model, self.kind)
        if found is not None:
            try:  # the model's config is checked now, not when the run has started
                found[1].replace(**self.model_overrides)
            except (TypeError, ValueError) as e:
                raise ValueError(f"model_overrides: {e}") from None
            return
        if found is None:
            other = find_preset(self.model)
            if other is not None:
                raise ValueError(
                    f"model {self.model!r} is a {other[0].kind} preset; a {self.kind} run trains a {self.kind}"
                )
            names = sorted(n for cls in _registered_classes(self.kind) for n in cls.presets)
            raise ValueError(f"model {self.model!r} is not a {self.kind} preset; choose one of {names}")


def _registered_classes(kind: str) -> list[type]:
    """The registered model families of one kind."""
    from ..core.registry import model_classes

    return model_classes(kind)


def _tiny_loss() -> dict[str, Any]:
    """All terms on, with small random frozen networks (no downloads), GAN from step 2."""
    return dict(
        perceptual_network="vgg16-tiny",
        discriminator_backbone="vit-tiny",
        alignment_teacher="vit-tiny",
        discriminator_start=2,
    )


RECIPES: dict[str, dict[str, Any]] = {
    # The paper's tokenizer run (spec §2, §4): 1M steps at 256; the released weights are the 750k EMA.
    # Validation every 50k steps on the held-out images given as --eval-data, as the official trainer; the 750k
    # checkpoint, whose EMA the released generator's codes came from, is kept (``restok export RUN --step 750000``).
    "restok-l-128": dict(
        kind="tokenizer",
        model="restok-l-128",
        batch_size=256,
        max_steps=1_000_000,
        seed=10086,
        mixed_precision="fp16",
        optimizer=dict(weight_decay=1e-4, grad_clip=10.0),
        disc_optimizer=dict(weight_decay=1e-4, grad_clip=10.0),
        num_workers=16,
        log_every=50,
        save_every=5_000,
        image_every=5_000,
        keep_steps=(750_000,),
        eval_every=50_000,
        eval_images=50_000,
    ),
    # The paper's generator run (spec §3.2): GPT-L HAR, 1.5M steps at 256, bf16, wd 0.05, clip 1.
    "har-l": dict(
        kind="generator",
        model="har-l",
        batch_size=256,
        max_steps=1_500_000,
        seed=10086,
        mixed_precision="bf16",
        optimizer=dict(weight_decay=0.05, grad_clip=1.0),
        num_workers=12,
        log_every=50,
        save_every=5_000,
        image_every=5_000,
    ),
    # Toy runs that train on 2 CPU cores in minutes (every loss term on, small frozen networks).
    "restok-tiny": dict(
        kind="tokenizer",
        model="restok-tiny",
        batch_size=8,
        max_steps=2_000,
        seed=0,
        optimizer=dict(lr=1e-3, warmup_steps=50, end_lr=1e-4),
        disc_optimizer=dict(lr=1e-4, warmup_steps=50, end_lr=1e-5),
        loss=_tiny_loss(),
        ema_decay=0.999,
        log_every=10,
        save_every=200,
        image_every=200,
    ),
    "har-tiny": dict(
        kind="generator",
        model="har-tiny",
        batch_size=16,
        max_steps=2_000,
        seed=0,
        optimizer=dict(lr=1e-3, weight_decay=0.05, grad_clip=1.0, warmup_steps=50, end_lr=1e-4),
        ema_decay=0.999,
        log_every=10,
        save_every=200,
        image_every=200,
    ),
}
for _size in ("b", "xl", "xxl"):
    RECIPES[f"har-{_size}"] = {**RECIPES["har-l"], "model": f"har-{_size}"}
# The other families on the same toy recipe (restok-tiny's schedule and objective), without the representation
# alignment, which trains heads only ResTok has.
for _preset in ("titok-tiny-single", "one-d-piece-tiny-single", "llamagen-vq-tiny"):
    RECIPES[_preset] = {
        **RECIPES["restok-tiny"],
        "model": _preset,
        "loss": {**_tiny_loss(), "alignment_weight": 0.0},
    }


def _parse_value(text: str) -> Any:
    """``key=value`` values are YAML scalars/lists (``1e-4``, ``true``, ``[0.9, 0.95]``, ``null``)."""
    return _fix_numbers(load_yaml(text, f"override value {text!r}"))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted ``a.b=value`` overrides to a nested dict (copying it)."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. optimizer.lr=3e-4)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = _parse_value(value)
    return data


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _defaults_dict(kind: str) -> dict[str, Any]:
    cfg = TrainConfig(kind=kind, model="restok-tiny" if kind == "tokenizer" else "har-tiny")
    return cfg.to_dict()


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _fix_numbers(node: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; turn such strings back into floats."""
    if isinstance(node, dict):
        return {k: _fix_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_numbers(v) for v in node]
    if isinstance(node, str) and _NUMBER.fullmatch(node.strip()):
        return float(node)
    return node


def _config_data(name_or_path: str, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe's dict, or a YAML file's mapping merged over its ``base:`` (a recipe or another YAML file)."""
    if name_or_path in RECIPES and not seen:
        return dict(RECIPES[name_or_path])
    p = Path(name_or_path)
    if not p.is_file():
        raise ValueError(f"config {name_or_path!r} is neither a recipe ({', '.join(sorted(RECIPES))}) nor a YAML file")
    if p.resolve() in seen:
        raise ValueError(f"{p}: 'base:' chain loops back to itself")
    data = _fix_numbers(load_yaml(read_text_input(p, "training config"), str(p)) or {})
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a training config must be a YAML mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    base = str(base)
    if base in RECIPES:
        return _merge(RECIPES[base], data)
    base_path = p.parent / base  # relative to the file that names it
    if not base_path.is_file():
        raise ValueError(
            f"{p}: base {base!r} is neither a recipe ({', '.join(sorted(RECIPES))}) nor a YAML file next to it"
        )
    return _merge(_config_data(str(base_path), seen + (p.resolve(),)), data)


def load_train_config(name_or_path: str, kind: str, overrides: list[str] | None = None) -> TrainConfig:
    """A recipe name or a YAML file (optionally ``base:`` a recipe or another YAML file), then ``key=value``
    overrides."""
    if kind not in _DEFAULTS:
        raise ValueError(f"kind must be 'tokenizer' or 'generator', got {kind!r}")
    data = _config_data(name_or_path)  # YAML's ``1e-4`` strings are numbers again from here on (_fix_numbers)
    data.setdefault("kind", kind)
    if data["kind"] != kind:
        raise ValueError(f"config {name_or_path!r} is a {data['kind']} config, not a {kind} config")
    full = apply_overrides(_merge(_DEFAULTS[kind], data), overrides or [])  # (apply_overrides copies)
    if full.get("ablation"):  # the named setting goes under the run's own overrides, which win
        settings = ablation_settings(str(full["ablation"]), kind)
        full = apply_overrides(_merge(_merge(_DEFAULTS[kind], data), settings), overrides or [])
    if full.get("kind") != kind:
        raise ValueError(f"kind={full.get('kind')!r} contradicts 'restok train {kind}'")
    return TrainConfig.from_dict(full)


# every field's default, per kind: what a recipe or a YAML file is merged over
_DEFAULTS = {kind: _defaults_dict(kind) for kind in ("tokenizer", "generator")}
