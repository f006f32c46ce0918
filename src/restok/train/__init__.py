"""Training: the tokenizer (Sec. 3.4, Eq. 4) and the HAR generator (Sec. 4), on Hugging Face Accelerate."""

from .config import RECIPES, OptimConfig, TrainConfig, load_train_config
from .engine import TrainingError

__all__ = ["RECIPES", "OptimConfig", "TrainConfig", "load_train_config", "TrainingError", "train_tokenizer", "train_generator"]


def train_tokenizer(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`restok.train.tokenizer.train_tokenizer`."""
    from .tokenizer import train_tokenizer as f

    return f(*args, **kwargs)


def train_generator(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`restok.train.generator.train_generator`."""
    from .generator import train_generator as f

    return f(*args, **kwargs)
