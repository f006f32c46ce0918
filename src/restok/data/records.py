"""What a data source is: a list of image records (name, label, how to read the bytes) and the class names.

A leaf module, so that the folder/shard readers (:mod:`.sources`) and the embedded data (:mod:`.embedded`) both build
sources without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..runtime.requests import RequestError

__all__ = ["DataError", "ImageRecord", "ImageSource"]


class DataError(RequestError):
    """A dataset path or layout that cannot be used."""


@dataclass(frozen=True)
class ImageRecord:
    """One sample: a name for messages, its label (-1 when unlabelled) and how to read its bytes (a picklable
    callable, so DataLoader workers started with ``spawn`` can use it)."""

    name: str
    label: int
    read: Callable[[], bytes]


class ImageSource:
    """An indexable list of :class:`ImageRecord` plus the class names found in the data."""

    def __init__(self, records: Sequence[ImageRecord], class_names: list[str], description: str) -> None:
        self.records, self.class_names, self.description = records, class_names, description

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unlabelled data)."""
        return len(self.class_names)

    def labels(self) -> np.ndarray:
        """Every sample's label (-1: none), read from the index where the records have one (no record is built)."""
        stored = getattr(self.records, "labels", None)
        return np.asarray(stored if stored is not None else [r.label for r in self.records], dtype=np.int64)

    def unlabeled(self) -> list[int]:
        """Positions of the samples that carry no label in a source that has classes (a Hugging Face ``ClassLabel``
        of -1, a shard member without ``.cls``); none in an unlabelled source, where no sample has one."""
        return np.flatnonzero(self.labels() < 0).tolist() if self.class_names else []

    def unlabeled_note(self, limit: int = 3) -> str | None:
        """One line naming the samples :meth:`unlabeled` finds (the first ``limit`` of them), or None."""
        missing = self.unlabeled()
        if not missing:
            return None
        shown = ", ".join(self.records[i].name for i in missing[:limit]) + (", ..." if len(missing) > limit else "")
        return (
            f"{len(missing)} of {len(self)} samples carry no label (-1) though the source has {self.num_classes} "
            f"classes: {shown}"
        )

    def require_labels(self, what: str) -> None:
        """Refuse a labelled source with unlabelled samples for ``what`` (they would be read as class -1)."""
        note = self.unlabeled_note()
        if note is not None:
            raise DataError(f"{note}; {what} needs every sample labelled: label them or leave them out of the source")
