"""Data: everything that turns files into tensors and back, without a model.

What a source is (:mod:`.records`), folders, tar shards and the embedded data as sources (:mod:`.sources`,
:mod:`.embedded`), image files, the one evaluation transform and grids (:mod:`.images`), the training crops
(:mod:`.transforms`), torch datasets and the step-keyed sampler (:mod:`.datasets`), class names (:mod:`.classes`),
code sets (:mod:`.codes`) and token-ids files (:mod:`.token_files`). Imports :mod:`restok.core` and
:mod:`restok.runtime` only.
"""

from ..runtime.seeds import derive_seed
from .datasets import ImageDataset, StepBatchSampler, collate_images
from .images import pil_to_tensor
from .records import DataError, ImageRecord, ImageSource
from .sources import open_image_source
from .transforms import adm_center_crop, adm_random_crop, decode_image, ten_crop

__all__ = [
    "derive_seed",
    "ImageRecord",
    "ImageSource",
    "open_image_source",
    "adm_center_crop",
    "adm_random_crop",
    "ten_crop",
    "pil_to_tensor",
    "decode_image",
    "ImageDataset",
    "StepBatchSampler",
    "collate_images",
    "DataError",
]
