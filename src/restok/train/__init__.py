"""Training: the tokenizer (Sec. 3.4, Eq. 4) and the HAR generator (Sec. 4), on Hugging Face Accelerate.

Configs and recipes (:mod:`.config`), the tokenizer's objective and its frozen networks (:mod:`.losses`,
:mod:`.backbones`), the optimiser and schedule (:mod:`.optim`), the EMA (:mod:`.ema`), processes and sharding
(:mod:`.distributed`), checkpoints (:mod:`.checkpoints`), logs and stop requests (:mod:`.monitor`), the loop
(:mod:`.loop`) and what a trainer plugs into it (:mod:`.task`), the two trainers (:mod:`.tokenizer`,
:mod:`.generator`), dead-code restarts (:mod:`.codebook`), code sets for generator training (:mod:`.codes`) and
inference models from checkpoints (:mod:`.export`). Imports every layer below it, never the CLI or the apps.
"""

from pathlib import Path
from typing import Any

from .config import RECIPES, OptimConfig, TrainConfig, load_train_config
from .errors import TrainingError

__all__ = [
    "RECIPES",
    "OptimConfig",
    "TrainConfig",
    "load_train_config",
    "TrainingError",
    "train_tokenizer",
    "train_generator",
]


def train_tokenizer(cfg: TrainConfig, data: str, out: str | Path, **options: Any) -> Any:
    """Train a tokenizer (:func:`restok.train.tokenizer.train_tokenizer`; imported on first use, with Accelerate)."""
    from .tokenizer import train_tokenizer as train

    return train(cfg, data, out, **options)


def train_generator(cfg: TrainConfig, codes: str, out: str | Path, **options: Any) -> Any:
    """Train a generator (:func:`restok.train.generator.train_generator`; imported on first use, with Accelerate)."""
    from .generator import train_generator as train

    return train(cfg, codes, out, **options)
