"""restok: ResTok hierarchical-residual 1-D tokenizer and HAR generator (arXiv 2601.03955) in PyTorch.

The package reads as the paper's table of contents, lower layers first (each imports only the ones before it):
``runtime`` (atomic files, locks, the chunk runner, devices, precisions) < ``core`` (the hierarchy, configs, the model
registry) < ``data`` (image sources, transforms, code sets, token files) < ``sampling`` (the recipe, guidance, the loop)
< ``hub`` (checkpoints and ``from_pretrained``) < ``models`` (the tokenizer and the HAR generator) < ``eval`` (metrics
and protocols) < ``pipelines`` < ``train`` < ``apps`` (demos) < ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import _compat
from .eval.budgets import encode_adaptive
from .models import HARGenerator, ResTok, load_generator, load_model, load_tokenizer
from .models.har import GENERATOR_PRESETS, HARConfig
from .models.layers.pixel_cnn import PixelCNNConfig
from .models.restok import TOKENIZER_PRESETS, ResTokConfig
from .pipelines import ResTokPipeline
from .runtime.version import __version__
from .sampling import RELEASED_RECIPE, SAMPLING_PRESETS, CompiledSampler, KVCache, SamplingConfig

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
    "CompiledSampler",
    "encode_adaptive",
    "load_model",
    "load_tokenizer",
    "load_generator",
    "__version__",
]

_compat.install()
_SUBPACKAGES = ("runtime", "core", "data", "sampling", "hub", "models", "eval", "pipelines", "train", "apps", "cli")


def __getattr__(name: str) -> Any:
    """Sub-packages (``restok.eval``) and the old module paths (``restok.metrics``), imported on first use."""
    if name in _SUBPACKAGES or name in _compat.MOVED:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'restok' has no attribute {name!r}")
