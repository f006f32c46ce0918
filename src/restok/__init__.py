"""restok: ResTok hierarchical-residual 1-D tokenizer and HAR generator (arXiv 2601.03955) in PyTorch."""

from __future__ import annotations

import importlib
from typing import Any

from .config import GENERATOR_PRESETS, TOKENIZER_PRESETS, HARConfig, PixelCNNConfig, ResTokConfig
from .generator import HARGenerator, KVCache
from .pipeline import ResTokPipeline
from .sampling import RELEASED_RECIPE, SAMPLING_PRESETS, SamplingConfig
from .tokenizer import ResTok

__version__ = "0.1.0"

__all__ = [
    "ResTok",
    "ResTokConfig",
    "PixelCNNConfig",
    "HARGenerator",
    "HARConfig",
    "KVCache",
    "ResTokPipeline",
    "SamplingConfig",
    "RELEASED_RECIPE",
    "SAMPLING_PRESETS",
    "TOKENIZER_PRESETS",
    "GENERATOR_PRESETS",
    "__version__",
]

# Submodules reachable as attributes (``restok.metrics.frechet_distance``), imported on first use.
_SUBMODULES = ("metrics", "evaluation", "sampling", "hierarchy", "checkpoint", "official", "datasets", "data", "images",
               "inception", "classes", "codes", "viz", "demo", "train", "precision", "io")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'restok' has no attribute {name!r}")
