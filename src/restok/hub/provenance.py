"""Provenance: where a model's weights came from, recorded with every output made with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.hashing import file_sha256

__all__ = ["Provenance"]


@dataclass
class Provenance:
    """Where a model came from: ``source`` (the name it was loaded by, or how it was made), the weights file, the
    Hub revision, the layout (``restok``, ``official``, ``memory``), the training-only keys dropped on load and the
    card of measured figures that came with it (``card.json``), if any."""

    source: str = "in memory"
    weights: str | None = None
    revision: str | None = None
    layout: str = "memory"
    dropped_keys: tuple[str, ...] = ()
    card: dict[str, Any] | None = None
    _sha256: str | None = field(default=None, repr=False, compare=False)

    def weights_sha256(self) -> str | None:
        """SHA-256 of the weights file (computed once), or None for a model that did not come from a file."""
        if self._sha256 is None and self.weights and Path(self.weights).is_file():
            self._sha256 = file_sha256(self.weights)
        return self._sha256

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (without the card)."""
        return {
            "source": self.source,
            "weights": self.weights,
            "revision": self.revision,
            "layout": self.layout,
            "dropped_keys": len(self.dropped_keys),
        }
