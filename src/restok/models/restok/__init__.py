"""ResTok, the paper's tokenizer (Sec. 3), in one home: its configuration and presets (:mod:`.config`), its official
checkpoint layout (:mod:`.official`) and the model (:mod:`.model`), which registers the family."""

from .config import RESTOK_PRESETS, TOKENIZER_PRESETS, ResTokConfig, tokenizer_preset
from .model import EncoderOutput, ResTok, ResTokDecoder, ResTokEncoder, ResTokOutput
from .official import RESTOK_LAYOUTS, RESTOK_VIT_SIZES, TOKENIZER_TRAINING_ONLY, tokenizer_config_from_official

__all__ = [
    "ResTok",
    "ResTokConfig",
    "ResTokEncoder",
    "ResTokDecoder",
    "ResTokOutput",
    "EncoderOutput",
    "RESTOK_PRESETS",
    "TOKENIZER_PRESETS",
    "tokenizer_preset",
    "RESTOK_LAYOUTS",
    "RESTOK_VIT_SIZES",
    "TOKENIZER_TRAINING_ONLY",
    "tokenizer_config_from_official",
]
