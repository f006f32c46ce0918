"""What an evaluation job carries, in one object: where it runs (device, the processes of a launch), whether it draws
progress bars, the FID Inception (loaded once, on first use), how many images go in a batch, whether a partial count
is accepted, and the resumable work folder of each result (its lock, settings and atomic chunks). Every protocol,
the comparison, the budgets and the guidance search take a context instead of a dozen arguments."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.chunks import ChunkJob
from ..runtime.processes import Processes, launched
from ..runtime.progress import progress
from .inception import InceptionFeatures, load_inception
from .protocol import merge_work, open_work

__all__ = ["EvalOptions", "EvalContext"]


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """Where and how an evaluation runs: what every evaluation request shares."""

    device: str = "auto"
    progress: bool = True
    batch_size: int = 32
    allow_partial: bool = False
    inception_weights: str | None = None  # a TorchScript FID Inception or torch-fidelity's .pth (None: downloaded)
    inception_dtype: str = "fp64"  # fp64 as the official evaluator


class EvalContext:
    """One evaluation job's shared state (see the module's docstring)."""

    def __init__(
        self,
        processes: Processes | None = None,
        device: Any = "cpu",
        inception: InceptionFeatures | None = None,
        options: EvalOptions = EvalOptions(),
    ) -> None:
        self.processes = processes or Processes()
        self.device, self.options, self._inception = device, options, inception

    @classmethod
    def open(cls, options: EvalOptions) -> EvalContext:
        """The context of this process of a launch (its own GPU under torchrun), the Inception not loaded yet."""
        processes, device = launched(options.device, progress=options.progress)
        return cls(processes, device, None, options)

    @property
    def inception(self) -> InceptionFeatures:
        """The FID Inception on this context's device, loaded on first use."""
        if self._inception is None:
            o = self.options
            self._inception = load_inception(o.inception_weights, device=self.device, dtype=o.inception_dtype)
        return self._inception

    @property
    def batch_size(self) -> int:
        """Images or samples per batch (and per chunk of the work folder)."""
        return self.options.batch_size

    @property
    def allow_partial(self) -> bool:
        """Whether a result on fewer images or samples than asked is reported."""
        return self.options.allow_partial

    def quiet(self) -> EvalContext:
        """The same context without progress bars (the points of a search each run an evaluation of their own)."""
        p = self.processes
        quiet = Processes(p.rank, p.world, p.barrier, progress=False)
        return EvalContext(quiet, self.device, self._inception, dataclasses.replace(self.options, progress=False))

    def bar(self, items: Iterable[Any] | None, desc: str, unit: str = "it", total: int | None = None) -> Any:
        """A progress bar on the main process (when progress is on)."""
        return progress(items, desc, total=total, enabled=self.processes.shows_progress, unit=unit)

    def work(self, out: Path, settings: dict[str, Any], n_chunks: int) -> ChunkJob:
        """The resumable chunks of the result ``out`` in ``OUT.work/`` (chunk k by process k mod world; chunks written
        under other settings refused)."""
        return open_work(out, settings, n_chunks, self.processes)

    def merge(self, job: ChunkJob, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
        """Wait for every process; on the main one, the chunks concatenated in order (None elsewhere)."""
        return merge_work(job, self.processes, skip)
