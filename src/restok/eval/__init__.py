"""Evaluation: the paper's numbers, computed as the official evaluators compute them.

Metrics (:mod:`.metrics`: rFID/gFID, IS, precision/recall, PSNR, SSIM, codebook usage/entropy), the FID Inception
(:mod:`.inception`), what both protocols share (:mod:`.protocol`), the reconstruction protocol and its rate curve
(:mod:`.reconstruction`), token budgets (:mod:`.budgets`), the generation protocol (:mod:`.generation`), reference
and sample batches in the ADM layout (:mod:`.references`), the guidance search (:mod:`.search`) and plots
(:mod:`.plots`). Works on any model through its public interface; imports :mod:`restok.data`,
:mod:`restok.sampling`, :mod:`restok.core` and :mod:`restok.runtime`, never a model family.
"""

from .budgets import AdaptiveCodes, budget_distribution, encode_adaptive
from .generation import LABEL_ORDER, evaluate_generation, generation_labels
from .protocol import PROTOCOL_VERSION, EvaluationError, to_uint8_truncate
from .reconstruction import evaluate_reconstruction, prefix_arrays, reconstruction_batch, summarize_reconstruction
from .references import load_reference, make_reference, write_sample_batch

__all__ = [
    "PROTOCOL_VERSION",
    "LABEL_ORDER",
    "EvaluationError",
    "to_uint8_truncate",
    "evaluate_reconstruction",
    "evaluate_generation",
    "generation_labels",
    "reconstruction_batch",
    "prefix_arrays",
    "summarize_reconstruction",
    "budget_distribution",
    "load_reference",
    "make_reference",
    "write_sample_batch",
    "encode_adaptive",
    "AdaptiveCodes",
]
