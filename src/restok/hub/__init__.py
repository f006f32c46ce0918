"""The hub: checkpoints in and out, wherever they are and whichever layout they are in.

Files (:mod:`.files`: weights and configs read safely, this package's format written atomically), where a checkpoint
is (:mod:`.resolve`: embedded names, local paths, Hub ids), the one check of its tensors (:mod:`.keys`), provenance
(:mod:`.provenance`), model cards (:mod:`.cards`), Hub uploads (:mod:`.push`) and ``from_pretrained`` /
``save_pretrained`` for every registered family (:mod:`.pretrained`). Imports :mod:`restok.core` and
:mod:`restok.runtime`; it never imports a model family (the registry tells it which class a checkpoint is).
"""

from ..runtime.hashing import file_sha256, state_dict_sha256
from .files import FORMAT_VERSION, WEIGHT_FILES, CheckpointError, read_config_file, read_state_dict, save_checkpoint
from .keys import check_state_dict
from .provenance import Provenance
from .push import push_folder_to_hub
from .resolve import EMBEDDED_MODELS, ResolvedCheckpoint, embedded_model_card, embedded_model_dir, resolve_checkpoint

__all__ = [
    "FORMAT_VERSION",
    "WEIGHT_FILES",
    "CheckpointError",
    "Provenance",
    "ResolvedCheckpoint",
    "read_state_dict",
    "resolve_checkpoint",
    "read_config_file",
    "check_state_dict",
    "save_checkpoint",
    "push_folder_to_hub",
    "file_sha256",
    "state_dict_sha256",
    "EMBEDDED_MODELS",
    "embedded_model_dir",
    "embedded_model_card",
]
