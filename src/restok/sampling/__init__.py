"""Sampling: from class labels to token ids, for any generator that implements the sampling contract.

The recipe (:mod:`.recipe`: ``SamplingConfig`` and the named recipes), guidance (:mod:`.guidance`: the schedules and
``forward_with_cfg``), logit filtering (:mod:`.logits`), the contract with the model and the explicit KV cache
(:mod:`.protocol`), the loop (:mod:`.loop`) and its compiled steps (:mod:`.compiled`). Imports :mod:`restok.core`
and :mod:`restok.runtime` only: it never imports a model.
"""

from .compiled import CompiledDecoder, CompiledSampler
from .guidance import CFG_SCHEDULES, OFFICIAL_CFG_OFFSET, cfg_value, cfg_values, forward_with_cfg, guided_logits
from .logits import filter_logits, sample_from_logits
from .loop import generate
from .protocol import KVCache, Sampleable
from .recipe import RELEASED_RECIPE, SAMPLING_FIELDS, SAMPLING_PRESETS, SamplingConfig

__all__ = [
    "SamplingConfig",
    "SAMPLING_PRESETS",
    "SAMPLING_FIELDS",
    "RELEASED_RECIPE",
    "CFG_SCHEDULES",
    "OFFICIAL_CFG_OFFSET",
    "cfg_value",
    "cfg_values",
    "guided_logits",
    "forward_with_cfg",
    "filter_logits",
    "sample_from_logits",
    "generate",
    "KVCache",
    "Sampleable",
    "CompiledSampler",
    "CompiledDecoder",
]
