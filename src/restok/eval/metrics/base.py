"""What an evaluation metric is: a small registered class that says which protocols it serves, what it consumes and
how it turns what it consumed into numbers -- torchmetrics' ``update``/``compute``, split so that an evaluation's
chunks can be written, resumed and merged across processes.

A metric may keep per-item arrays of every batch (:meth:`Metric.per_item`: PSNR, SSIM and LPIPS score each image of a
batch against its reconstruction) and computes its numbers from the merged arrays of all batches
(:meth:`Metric.compute`), which the protocol hands over by the names of :data:`INPUTS`. Adding a metric is one module:
a subclass registered with :func:`register_metric`, imported by :mod:`restok.eval.metrics`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = [
    "RECONSTRUCTION",
    "GENERATION",
    "INPUTS",
    "ImagePair",
    "Metric",
    "register_metric",
    "metric_class",
    "metric_classes",
    "MetricError",
]

RECONSTRUCTION, GENERATION = "reconstruction", "generation"

# What the protocols hand a metric, by name. Reconstruction: the ids, the originals' and the 8-bit reconstructions'
# Inception features and the reconstructions' logits, the per-image arrays of the metrics that keep them, and the
# tokenizer's codebook size. Generation: the samples' Inception features and logits, and the reference batch (mu,
# sigma, activations).
INPUTS = ("ids", "codebook_size", "real_features", "fake_features", "logits", "reference")


class MetricError(ValueError):
    """A metric asked for by a name no metric has, or for a protocol it does not serve."""


@dataclass(frozen=True)
class ImagePair:
    """One batch as a per-image metric sees it: the originals (B, 3, S, S) in [0, 1] and their 8-bit reconstructions
    (the same shape, values k/255), on the tokenizer's device."""

    images: torch.Tensor
    reconstructions: torch.Tensor


class Metric(ABC):
    """An evaluation metric (see the module's docstring)."""

    name: ClassVar[str]  # the registry name (``--metric NAME``) and the result key of a one-number metric
    tasks: ClassVar[tuple[str, ...]] = (RECONSTRUCTION, GENERATION)
    consumes: ClassVar[frozenset[str]] = frozenset()  # names of INPUTS (and per-item arrays) it reads
    # Where its numbers stand in a result: lower first (the count of images or samples stands at 50).
    position: ClassVar[int] = 100
    # Asked for by name (``--metric NAME``); the others are part of their protocols and always computed.
    optional: ClassVar[bool] = False

    def result_keys(self, task: str) -> tuple[str, ...]:
        """The keys of its numbers in a result (a table's columns)."""
        return (self.name,)

    def needs(self, task: str) -> frozenset[str]:
        """The inputs it cannot do without under ``task`` (a protocol leaves it out when one is missing, as the
        reconstruction protocol does with no Inception)."""
        return self.consumes

    def per_item(self, pair: ImagePair) -> dict[str, np.ndarray]:
        """Arrays of one batch to keep in its chunk, one value per image (default: none)."""
        return {}

    @abstractmethod
    def compute(self, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
        """The metric's numbers from the merged inputs of every batch (keys of :data:`INPUTS` and per-item arrays)."""

    def describe(self, task: str) -> str | None:
        """How its numbers are computed under ``task``, recorded in the result's settings (None: nothing to say)."""
        return None

    def work_identity(self) -> Any:
        """What must match for chunks written earlier to be resumed (None: its per-item arrays depend on nothing
        beyond the job's own settings)."""
        return None


_REGISTRY: dict[str, type[Metric]] = {}


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: add a metric to the registry."""
    other = _REGISTRY.get(cls.name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise MetricError(f"metric {cls.name!r} is registered twice ({other.__name__} and {cls.__name__})")
    _REGISTRY[cls.name] = cls
    return cls


def metric_classes(task: str | None = None, optional: bool | None = None) -> list[type[Metric]]:
    """The registered metrics (serving ``task``; optional or not), in result order."""
    found = [
        c
        for c in _REGISTRY.values()
        if (task is None or task in c.tasks) and (optional is None or c.optional == optional)
    ]
    return sorted(found, key=lambda c: c.position)


def metric_class(name: str, task: str | None = None) -> type[Metric]:
    """The metric called ``name`` (serving ``task``), or a MetricError naming the ones there are."""
    cls = _REGISTRY.get(name)
    if cls is None or (task is not None and task not in cls.tasks):
        known = sorted(c.name for c in metric_classes(task))
        where = f" for {task}" if task else ""
        raise MetricError(f"no metric {name!r}{where}; registered: {', '.join(known)}")
    return cls
