"""HAR, the paper's hierarchical autoregressive generator (Sec. 4), in one home: its configuration, presets and the
LlamaGen GPT size table (:mod:`.config`), its official checkpoint layout (:mod:`.official`) and the model
(:mod:`.model`), which registers the family."""

from .config import GENERATOR_PRESETS, GPT_SIZES, HAR_PRESETS, HARConfig, generator_preset
from .model import HARGenerator, KVCache
from .official import HAR_LAYOUTS, generator_config_from_official

__all__ = [
    "HARGenerator",
    "HARConfig",
    "KVCache",
    "GPT_SIZES",
    "HAR_PRESETS",
    "GENERATOR_PRESETS",
    "generator_preset",
    "HAR_LAYOUTS",
    "generator_config_from_official",
]
