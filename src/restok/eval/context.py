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
from typing import TYPE_CHECKING, Any

import torch

from ..data.records import ImageSource
from ..data.sources import open_image_source
from ..models.auto import check_compatible, load_generator, load_tokenizer
from ..runtime.chunks import ChunkError
from ..runtime.processes import Processes, launched
from ..runtime.progress import progress
from .inception import InceptionFeatures, load_inception
from .protocol import EvaluationError, open_work

if TYPE_CHECKING:
    from ..models.har import HARGenerator
    from ..models.tokenizer import Tokenizer

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
        device: Any = None,
        inception: InceptionFeatures | None = None,
        options: EvalOptions = EvalOptions(),
        *,
        data: str | ImageSource | None = None,
        tokenizer: str | Tokenizer | Callable[[], Tokenizer] | None = None,
        generator: str | HARGenerator | None = None,
    ) -> None:
        self.options = options
        self._processes, self._device, self._inception = processes, device, inception
        self._data, self._tokenizer, self._generator = data, tokenizer, generator  # opened on first use

    @classmethod
    def open(cls, options: EvalOptions, **resources: Any) -> EvalContext:
        """The context of this process of a launch (its own GPU under torchrun) with the resources a request names
        (``data``, ``tokenizer``, ``generator``), each opened on first use."""
        return cls(None, None, None, options, **resources)

    # -------------------------------------------------------------------------------- where it runs
    def _launch(self) -> None:
        """This process of the launch and its device (once)."""
        processes, device = launched(self.options.device, progress=self.options.progress)
        self._processes = self._processes or processes
        self._device = self._device if self._device is not None else device

    @property
    def processes(self) -> Processes:
        """The processes of the launch (this one alone without a launcher)."""
        if self._processes is None:
            self._launch()
        return self._processes  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        """This process's device: the ``device`` option's, under a launcher each process's own GPU."""
        if self._device is None:
            self._launch()
        return self._device

    @property
    def batch_size(self) -> int:
        """Images or samples per batch (and per chunk of the work folder)."""
        return self.options.batch_size

    @property
    def allow_partial(self) -> bool:
        """Whether a result on fewer images or samples than asked is reported."""
        return self.options.allow_partial

    # -------------------------------------------------------------------------------- what it evaluates
    @property
    def source(self) -> ImageSource:
        """The images (a folder, shards, a Hugging Face dataset, ``embedded:NAME``), opened on first use."""
        if not isinstance(self._data, ImageSource):
            if self._data is None:
                raise ValueError("this evaluation names no data")
            self._data = open_image_source(self._data)
        return self._data

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer (any registered family), loaded on this context's device on first use."""
        if self._tokenizer is None:
            raise ValueError("this evaluation names no tokenizer")
        if isinstance(self._tokenizer, str):
            self._tokenizer = load_tokenizer(self._tokenizer, device=self.device)
        elif not isinstance(self._tokenizer, torch.nn.Module):  # a loader, called when the tokenizer is first needed
            self._tokenizer = self._tokenizer()
        return self._tokenizer

    @property
    def generator(self) -> HARGenerator:
        """The generator, loaded on first use and checked to sample the tokenizer's tokens."""
        if self._generator is None:
            raise ValueError("this evaluation names no generator")
        if isinstance(self._generator, str):
            self._generator = load_generator(self._generator, device=self.device)
            check_compatible(self.tokenizer, self._generator)
        return self._generator

    @property
    def inception(self) -> InceptionFeatures:
        """The FID Inception on this context's device, loaded on first use."""
        if self._inception is None:
            o = self.options
            self._inception = load_inception(o.inception_weights, device=self.device, dtype=o.inception_dtype)
        return self._inception

    def with_tokenizer(self, tokenizer: str | Tokenizer | Callable[[], Tokenizer]) -> EvalContext:
        """The same context (processes, Inception, data) evaluating another tokenizer (the comparison's rows)."""
        ctx = EvalContext(self._processes, self._device, self._inception, self.options, data=self._data)
        ctx._tokenizer = tokenizer
        return ctx

    def quiet(self) -> EvalContext:
        """The same context without progress bars (the points of a search each run an evaluation of their own)."""
        p = self.processes
        ctx = EvalContext(
            Processes(p.rank, p.world, p.barrier, progress=False),
            self._device,
            self._inception,
            dataclasses.replace(self.options, progress=False),
            data=self._data,
            tokenizer=self._tokenizer,
            generator=self._generator,
        )
        return ctx

    # -------------------------------------------------------------------------------- the work
    def bar(self, items: Iterable[Any] | None, desc: str, unit: str = "it", total: int | None = None) -> Any:
        """A progress bar on the main process (when progress is on)."""
        return progress(items, desc, total=total, enabled=self.processes.shows_progress, unit=unit)

    def evaluate(self, out: Path, job: Any) -> dict[str, Any] | None:
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
