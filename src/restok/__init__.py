"""restok: ResTok hierarchical-residual 1-D tokenizer and HAR generator (arXiv 2601.03955) in PyTorch."""

from .config import GENERATOR_PRESETS, TOKENIZER_PRESETS, HARConfig, PixelCNNConfig, ResTokConfig
from .generator import HARGenerator, KVCache
from .tokenizer import ResTok

__version__ = "0.1.0"

__all__ = [
    "ResTok",
    "ResTokConfig",
    "PixelCNNConfig",
    "HARGenerator",
    "HARConfig",
    "KVCache",
    "TOKENIZER_PRESETS",
    "GENERATOR_PRESETS",
    "__version__",
]
