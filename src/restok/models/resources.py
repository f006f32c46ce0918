"""What a job runs on and with: where it runs (its device, the processes of a launch) and the data and models it uses
-- each named by a request (a path, an embedded name, a Hub id) or given as an object, and opened on first use, once,
on the job's device. A request becomes a job through one of these instead of a dozen loading calls: the job asks for
what it needs in the order it needs it (the data before the models, so a wrong data path fails before any model is
loaded), and a generator is checked to sample its tokenizer's tokens when it is first asked for.

:class:`restok.eval.context.EvalContext` adds what evaluations share (the FID Inception, the work folders).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..data.records import ImageSource
from ..data.sources import open_image_source
from ..runtime.processes import Processes, launched
from ..runtime.requests import RequestError, field
from .auto import check_compatible, load_generator, load_tokenizer

if TYPE_CHECKING:
    from .har import HARGenerator
    from .tokenizer import Tokenizer

__all__ = ["Resources"]


class Resources:
    """A job's device, processes, data and models, each opened on first use (see the module's docstring)."""

    def __init__(
        self,
        device: str | torch.device | None = "auto",
        processes: Processes | None = None,
        progress: bool = True,
        *,
        data: str | ImageSource | None = None,
        tokenizer: str | Tokenizer | Callable[[], Tokenizer] | None = None,
        generator: str | HARGenerator | None = None,
    ) -> None:
        self._device_name = device if isinstance(device, str) or device is None else None
        self._device = device if isinstance(device, torch.device) else None
        self._processes, self._progress = processes, progress
        self._data, self._tokenizer, self._generator = data, tokenizer, generator  # opened on first use

    # -------------------------------------------------------------------------------- where it runs
    def _launch(self) -> None:
        """This process of the launch and its device (once)."""
        processes, device = launched(self._device_name or "auto", progress=self._progress)
        self._processes = self._processes or processes
        self._device = self._device if self._device is not None else device

    @property
    def processes(self) -> Processes:
        """The processes of the launch (``torchrun``, ``accelerate launch``; this one alone without a launcher)."""
        if self._processes is None:
            self._launch()
        return self._processes  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        """This process's device: the one asked for, under a launcher each process's own GPU."""
        if self._device is None:
            self._launch()
        return self._device  # type: ignore[return-value]

    # -------------------------------------------------------------------------------- what it uses
    @property
    def source(self) -> ImageSource:
        """The images (a folder, shards, a Hugging Face dataset, ``embedded:NAME``), opened on first use."""
        if not isinstance(self._data, ImageSource):
            if self._data is None:
                raise RequestError(f"this job names no images ({field('data')})")
            self._data = open_image_source(self._data)
        return self._data

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer (any registered family), loaded on this job's device on first use."""
        if self._tokenizer is None:
            raise RequestError(f"this job names no tokenizer ({field('tokenizer')})")
        if isinstance(self._tokenizer, str):
            self._tokenizer = load_tokenizer(self._tokenizer, device=self.device)
        elif not isinstance(self._tokenizer, torch.nn.Module):  # a loader, called when the tokenizer is first needed
            self._tokenizer = self._tokenizer()
        return self._tokenizer

    @property
    def generator(self) -> HARGenerator:
        """The generator, loaded on first use and checked to sample the tokenizer's tokens."""
        if self._generator is None:
            raise RequestError(f"this job names no generator ({field('generator')})")
        if isinstance(self._generator, str):
            self._generator = load_generator(self._generator, device=self.device)
            check_compatible(self.tokenizer, self._generator)
        return self._generator
