"""The sampling recipe: one typed, validated record of how to sample a generator (guidance scale, schedule and
start, temperature, top-k, top-p), the named recipes, and the description of each setting that the command line's
options are generated from."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.fields import Config, Range, field_range, setting
from ..runtime.inputs import read_text_input
from .guidance import CFG_SCHEDULES

__all__ = ["SamplingConfig", "SAMPLING_PRESETS", "RELEASED_RECIPE", "SAMPLING_FIELDS", "check_sampling"]


def _setting(default: Any, help: str, **extra: Any) -> Any:
    """A recipe field with the help text, choices and range its command-line option is made from."""
    return setting(default, help=help, **extra)


@dataclass(frozen=True)
class SamplingConfig(Config):
    """How to sample from a generator: classifier-free guidance (scale, schedule, start), temperature, top-k and
    top-p. Stored with a generator as ``generation_config.json`` (as transformers does), so ``gen.generate(labels)``
    follows the recipe its weights were released with unless told otherwise; validated when built."""

    # The upper bounds keep every logit finite in float16/float32 arithmetic: a scale of 1000 on logits of +-30, or a
    # temperature of 1e-4, is already far past any recipe in use (the paper's is 3.75).
    cfg_scale: float = _setting(1.0, "guidance scale (1 = none)", ge=1.0, le=1000.0)
    cfg_schedule: str = _setting(
        "constant", "guidance schedule over the model calls", choices=tuple(sorted(CFG_SCHEDULES))
    )
    cfg_start: float = _setting(0.0, "ratio of the calls from which the 'step' schedule guides", ge=0.0, le=1.0)
    temperature: float = _setting(1.0, "softmax temperature", ge=1e-4, le=100.0)
    top_k: int = _setting(0, "keep the k most likely tokens (0 = off)", ge=0, le=2**31 - 1)
    top_p: float = _setting(
        1.0, "nucleus: keep the most likely tokens up to this probability (1.0 = off)", gt=0.0, le=1.0
    )

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int):
            if isinstance(self.top_k, float) and self.top_k.is_integer():
                object.__setattr__(self, "top_k", int(self.top_k))
            else:
                raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        for name in ("cfg_scale", "cfg_start", "temperature", "top_p"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, int) and abs(v) > 2**53):
                raise ValueError(f"{name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))
        check_sampling(self)

    def replace(self, **changes: Any) -> SamplingConfig:
        """A copy with some settings changed (None values are ignored)."""
        unknown = sorted(set(changes) - set(SAMPLING_FIELDS))
        if unknown:
            raise ValueError(f"unknown sampling setting(s) {unknown}; known: {sorted(SAMPLING_FIELDS)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingConfig:
        """Build from a dict (e.g. ``generation_config.json``), naming unknown keys."""
        names = set(SAMPLING_FIELDS)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown sampling setting(s) {unknown}; known: {sorted(names)}")
        return cls(**dict(data))

    @classmethod
    def resolve(
        cls, recipe: str | Path | Mapping[str, Any] | SamplingConfig | None, default: SamplingConfig, **changes: Any
    ) -> SamplingConfig:
        """The recipe a user names: a preset (``released``, ``none``), a JSON file, a config, a dict of settings, or
        None for ``default`` (a generator's own); then each setting given in ``changes`` changed (None values
        ignored)."""
        if recipe is None or isinstance(recipe, SamplingConfig):
            base = default if recipe is None else recipe
        elif isinstance(recipe, Mapping):
            base = cls.from_dict(recipe)
        elif isinstance(recipe, (str, Path)):
            base = SAMPLING_PRESETS[recipe] if recipe in SAMPLING_PRESETS else cls.load(recipe)
        else:
            raise ValueError(
                f"sampling must be a SamplingConfig, a dict of its settings, a preset name "
                f"({', '.join(SAMPLING_PRESETS)}) or a JSON file, got {type(recipe).__name__}"
            )
        return base.replace(**changes)

    @classmethod
    def load(cls, path: str | Path) -> SamplingConfig:
        """Read a JSON file: a sampling config, or a file holding one under ``sampling`` (e.g. a search's best)."""
        try:
            data = json.loads(read_text_input(path, "sampling config"))
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


# Every setting of a recipe with its description: what the command line's options, the search grid's axes and the
# generators' keyword arguments are derived from.
SAMPLING_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(SamplingConfig)}


def check_sampling(sp: SamplingConfig) -> None:
    """Raise a ValueError naming the first out-of-range sampling setting."""
    if not isinstance(sp.cfg_schedule, str) or sp.cfg_schedule not in CFG_SCHEDULES:
        raise ValueError(f"unknown cfg_schedule {sp.cfg_schedule!r}; choose one of {sorted(CFG_SCHEDULES)}")
    if isinstance(sp.top_k, bool) or not isinstance(sp.top_k, int):
        raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {sp.top_k!r}")
    for (
        name,
        f,
    ) in SAMPLING_FIELDS.items():  # the declared ranges (finite numbers in every case), named as the CLI names them
        (field_range(f) or Range()).check(getattr(sp, name), name)


# The released sampling recipe (official README): step schedule at 3.75 from ratio 0.25, top-p 0.95.
RELEASED_RECIPE = SamplingConfig(
    cfg_scale=3.75, cfg_schedule="step", cfg_start=0.25, top_k=0, top_p=0.95, temperature=1.0
)
SAMPLING_PRESETS: dict[str, SamplingConfig] = {"released": RELEASED_RECIPE, "none": SamplingConfig()}
