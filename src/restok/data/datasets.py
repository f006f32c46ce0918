"""Torch datasets of images, and the step-keyed batch sampler that makes training exact.

* :class:`ImageDataset`: the images of a source as tensors (training: ADM random resized crop + flip from a per-sample
  seed; evaluation: the evaluation transform), unreadable files skipped and named.
* :class:`StepBatchSampler`: the batch of every step is a pure function of (seed, step); a process takes its slice
  of the global batch, so 1 and N processes see the same samples, and a resumed run the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from PIL import Image

from ..runtime.seeds import derive_seed
from .images import eval_transform, pil_to_tensor
from .records import DataError, ImageSource
from .transforms import adm_random_crop, decode_image

__all__ = ["ImageDataset", "collate_images", "StepBatchSampler"]


class ImageDataset(torch.utils.data.Dataset):
    """Images of a source as (3, S, S) tensors. Training: ADM random resized crop + flip, drawn from the
    per-sample seed the sampler passes; evaluation: resize + centre crop.

    Items are dicts: ``image``, ``label``, ``index``, ``skipped`` (names of unreadable files replaced).
    """

    MAX_SKIPS = 64

    def __init__(
        self, source: ImageSource, image_size: int, train: bool, min_crop: float = 0.8, flip: bool = True
    ) -> None:
        self.source, self.size, self.train, self.min_crop, self.flip = source, image_size, train, min_crop, flip

    def __len__(self) -> int:
        return len(self.source)

    def load(self, index: int, seed: int) -> torch.Tensor:
        """Read, decode and transform one record (raises on unreadable data)."""
        img = decode_image(self.source.records[index].read())
        if not self.train:
            return pil_to_tensor(eval_transform(img, self.size))
        gen = torch.Generator().manual_seed(seed)
        img = adm_random_crop(img, self.size, gen, self.min_crop, 1.0)
        if self.flip and float(torch.rand(1, generator=gen)) < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return pil_to_tensor(img)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = (key, key) if isinstance(key, int) else key
        skipped: list[str] = []
        n = len(self.source)
        for attempt in range(self.MAX_SKIPS):
            i = (index + attempt) % n
            try:
                image = self.load(i, seed)
            except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, with its reason
                skipped.append(f"{self.source.records[i].name} ({type(e).__name__}: {e})")
                continue
            return {"image": image, "label": self.source.records[i].label, "index": i, "skipped": skipped}
        raise DataError(f"{self.MAX_SKIPS} unreadable files in a row from index {index}: {skipped[:3]} ...")


def collate_images(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and labels; concatenate the skipped-file lists."""
    return {
        "image": torch.stack([it["image"] for it in items]),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "skipped": [s for it in items for s in it["skipped"]],
    }


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches as a pure function of (seed, step): epoch e is a seeded permutation of the data, step s takes
    global batch s mod (batches per epoch); this process gets rows [rank*b, (rank+1)*b) of it, each with a
    per-sample augmentation seed. Starting at ``start_step`` resumes the data stream exactly."""

    def __init__(
        self, num_samples: int, global_batch: int, rank: int, world: int, seed: int, start_step: int, end_step: int
    ) -> None:
        if global_batch % world:
            raise DataError(f"global batch {global_batch} is not divisible by {world} processes")
        if num_samples < global_batch:
            raise DataError(f"the data has {num_samples} samples, fewer than one global batch of {global_batch}")
        self.n, self.gb, self.rank, self.world, self.seed = num_samples, global_batch, rank, world, seed
        self.start, self.end = start_step, end_step
        self.per_epoch = num_samples // global_batch  # drop_last
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def global_batch_for(self, step: int) -> list[tuple[int, int]]:
        """All (index, sample seed) pairs of the global batch of ``step``."""
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            )
            self._perm_epoch = epoch
        idx = self._perm[b * self.gb : (b + 1) * self.gb].tolist()
        return [(i, derive_seed(self.seed, "sample", step, j)) for j, i in enumerate(idx)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per = self.gb // self.world
        for step in range(self.start, self.end):
            yield self.global_batch_for(step)[self.rank * per : (self.rank + 1) * per]
