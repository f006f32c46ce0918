"""What a data source is: a list of image records (name, label, how to read the bytes) and the class names.

A leaf module, so that the folder/shard readers (:mod:`.sources`) and the embedded data (:mod:`.embedded`) both build
sources without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
