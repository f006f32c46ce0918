"""What an evaluation job carries, in one object: where it runs (device, the processes of a launch), whether it draws
progress bars, how many images go in a batch and whether a partial count is accepted, the FID Inception, the data and
the models it evaluates, and the resumable work folder of each result (its lock, settings and atomic chunks).

Every protocol, the comparison, the budgets and the guidance search take a context instead of a dozen arguments. A
context is built from what names its resources (a data path, model names) or from the resources themselves, and opens
each on first use, once, on its device -- so a protocol asks for the data before the models (a wrong data path fails
before any model is loaded) and a job that never scores FID never loads the Inception.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..data.records import ImageSource
from ..models.resources import Resources
from ..runtime.chunks import ChunkError, ChunkJob
from ..runtime.processes import Processes
from ..runtime.progress import progress
from .inception import InceptionFeatures, load_inception
from .protocol import EvaluationError, open_work

if TYPE_CHECKING:
    from ..models.har import HARGenerator
    from ..models.tokenizer import Tokenizer

__all__ = ["EvalOptions", "EvalContext", "EvalJob"]


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """Where and how an evaluation runs: what every evaluation request shares."""

    device: str = "auto"
    progress: bool = True
    batch_size: int = 32
    allow_partial: bool = False
    inception_weights: str | None = None  # a TorchScript FID Inception or torch-fidelity's .pth (None: downloaded)
    inception_dtype: str = "fp64"  # fp64 as the official evaluator


class EvalJob(Protocol):
    """What :meth:`EvalContext.evaluate` runs: the settings that shape its chunks, how many there are, how one is
    computed, the inputs it could not use, and its result from the merged chunks."""

    settings: dict[str, Any]
    n_chunks: int
    description: str  # the progress bar's
    keep_apart: tuple[str, ...]  # arrays written per chunk but never merged in memory

    def chunk(self, c: int) -> dict[str, np.ndarray]:
        """Chunk ``c``'s arrays."""

    def skipped(self) -> list[str]:
        """This process's inputs that could not be used."""

    def finish(self, merged: dict[str, np.ndarray], work: ChunkJob) -> dict[str, Any]:
        """The result, from the merged chunks (on the main process)."""


class EvalContext(Resources):
    """One evaluation job's shared state (see the module's docstring): a job's resources (device, processes, data,
    models), the evaluation's options and its FID Inception."""

    def __init__(
        self,
        processes: Processes | None = None,
        device: Any = None,
        inception: InceptionFeatures | None = None,
        options: EvalOptions = EvalOptions(),
        *,
        data: str | ImageSource | None = None,
        tokenizer: str | Tokenizer | Callable[[], Tokenizer] | None = None,
        generator: str | HARGenerator | None = None,
    ) -> None:
        device = device if device is not None else options.device
        super().__init__(device, processes, options.progress, data=data, tokenizer=tokenizer, generator=generator)
        self.options, self._inception = options, inception

    @classmethod
    def open(cls, options: EvalOptions, **resources: Any) -> EvalContext:
        """The context of this process of a launch (its own GPU under torchrun) with the resources a request names
        (``data``, ``tokenizer``, ``generator``), each opened on first use."""
        return cls(None, None, None, options, **resources)

    @property
    def batch_size(self) -> int:
        """Images or samples per batch (and per chunk of the work folder)."""
        return self.options.batch_size

    @property
    def allow_partial(self) -> bool:
        """Whether a result on fewer images or samples than asked is reported."""
        return self.options.allow_partial

    @property
    def inception(self) -> InceptionFeatures:
        """The FID Inception on this context's device, loaded on first use."""
        if self._inception is None:
            o = self.options
            self._inception = load_inception(o.inception_weights, device=self.device, dtype=o.inception_dtype)
        return self._inception

    def with_tokenizer(self, tokenizer: str | Tokenizer | Callable[[], Tokenizer]) -> EvalContext:
        """The same context (processes, Inception, data) evaluating another tokenizer (the comparison's rows)."""
        return EvalContext(
            self._processes, self._device, self._inception, self.options, data=self._data, tokenizer=tokenizer
        )

    def quiet(self) -> EvalContext:
        """The same context without progress bars (the points of a search each run an evaluation of their own)."""
        p = self.processes
        return EvalContext(
            Processes(p.rank, p.world, p.barrier, progress=False),
            self._device,
            self._inception,
            dataclasses.replace(self.options, progress=False),
            data=self._data,
            tokenizer=self._tokenizer,
            generator=self._generator,
        )

    # -------------------------------------------------------------------------------- the work
    def bar(self, items: Iterable[Any] | None, desc: str, unit: str = "it", total: int | None = None) -> Any:
        """A progress bar on the main process (when progress is on)."""
        return progress(items, desc, total=total, enabled=self.processes.shows_progress, unit=unit)

    def evaluate(self, out: Path, job: EvalJob) -> dict[str, Any] | None:
        """Run an evaluation ``job`` into its result ``out``: the resumable chunks (``job.settings``, ``job.n_chunks``)
        not done yet, each computed by ``job.chunk(k)`` under a progress bar (``job.skipped()`` names the inputs it
        could not use); once every process is done, the main process merges them (but ``job.keep_apart``'s arrays)
        and returns ``job.finish(merged, work)``, the others None."""
        bar = functools.partial(progress, desc=job.description, enabled=self.processes.shows_progress, unit="batch")
        work = open_work(out, job.settings, job.n_chunks, self.processes)
        try:
            work.run(job.chunk, bar, job.skipped)
            merged = work.merge(job.keep_apart) if work.finish(self.processes.barrier) else None
        except ChunkError as e:
            raise EvaluationError(str(e)) from None
        return None if merged is None else job.finish(merged, work)
