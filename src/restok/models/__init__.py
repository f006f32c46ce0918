"""The models: the paper's tokenizer (:mod:`.restok`, Sec. 3) and HAR generator (:mod:`.har`, Sec. 4), and the families
the paper compares them with -- TiTok and One-D-Piece (:mod:`.titok`), LlamaGen's VQ tokenizer and GPT
(:mod:`.llamagen_vq`, :mod:`.llamagen_gpt`). Each family has one home (a module or a sub-package) holding its config
class, presets, size tables, release layouts and model, and registers itself in :mod:`restok.core.registry` when it is
imported. Beside them: what every tokenizer shares (:mod:`.tokenizer`), the building blocks (:mod:`.layers`: one ViT
block, the Llama blocks, the pixel CNN, the quantizer, RoPE) and loading any of them by name (:mod:`.auto`). Imports
:mod:`restok.hub`, :mod:`restok.sampling`, :mod:`restok.core` and :mod:`restok.runtime`.
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
from .tokenizer import Tokenizer

# The registry lists the families in the order they are imported here (restok info, help texts, tables keep it).
# isort: off
from .har import HARGenerator
from .restok import ResTok
from .llamagen_gpt import LlamaGenGPT
from .llamagen_vq import LlamaGenVQ
from .titok import OneDPiece, TiTok

# isort: on

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
