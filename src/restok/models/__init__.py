"""The models: the paper's tokenizer (:mod:`.restok`, Sec. 3) and HAR generator (:mod:`.har`, Sec. 4), the families the
paper compares them with (TiTok and One-D-Piece, :mod:`.titok`), what every tokenizer shares (:mod:`.tokenizer`),
their building blocks (:mod:`.layers`), the official checkpoint layouts (:mod:`.official`) and loading any of them by
name (:mod:`.auto`). Each family registers itself in :mod:`restok.core.registry` when its module is imported; the list
below is the registry's one entry per family. Imports :mod:`restok.hub`, :mod:`restok.sampling`, :mod:`restok.core`
and :mod:`restok.runtime`.
"""

from .auto import (
    check_compatible,
    convert_checkpoint,
    load_generator,
    load_model,
    load_pair,
    load_tokenizer,
    model_class_of,
)
from .har import HARGenerator
from .llamagen_gpt import LlamaGenGPT
from .llamagen_vq import LlamaGenVQ
from .restok import ResTok
from .titok import OneDPiece, TiTok
from .tokenizer import Tokenizer

__all__ = [
    "ResTok",
    "HARGenerator",
    "TiTok",
    "OneDPiece",
    "LlamaGenVQ",
    "LlamaGenGPT",
    "Tokenizer",
    "load_model",
    "load_tokenizer",
    "load_generator",
    "load_pair",
    "check_compatible",
    "convert_checkpoint",
    "model_class_of",
]
