"""What both evaluation protocols share: the protocol's version (written into every result), its one uint8
conversion, the error that refuses an untrustworthy number, and the resumable chunks of an evaluation
(``OUT.work/``: chunk k done by process k mod world; a rerun under other settings is refused).

* **Reconstruction** (:mod:`.reconstruction`) -- TiTok's, as the official ``test_restok.py``: rFID between the
  originals' and the 8-bit reconstructions' Inception features (SciPy ``sqrtm``), PSNR per image then averaged, SSIM as
  ``pytorch_msssim.ssim``, codebook usage and entropy, Inception Score over all reconstructions in one split.
* **Generation** (:mod:`.generation`) -- the official sampling script's labels (sample i has class ``i mod C``) and
  the ADM evaluator's gFID, IS (consecutive splits of 5,000) and precision/recall (k = 3) against a reference batch.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runtime.chunks import ChunkError, ChunkJob
from ..runtime.processes import Processes
from ..runtime.requests import RequestError

__all__ = ["PROTOCOL_VERSION", "EvaluationError", "to_uint8_truncate", "open_work", "merge_work", "now", "versions"]

# 2: the evaluation transform equals torchvision's (long side truncated), generation labels in the official order
# (i mod C), Inception Score in ADM's splits of 5,000 (generation) or one split (reconstruction), sqrtm FID.
PROTOCOL_VERSION = "restok-eval-2"


class EvaluationError(RequestError, RuntimeError):
    """An evaluation that cannot give a trustworthy number (too few samples, bad reference file)."""


def to_uint8_truncate(x: torch.Tensor) -> torch.Tensor:
    """The official evaluator's conversion: ``(x * 255).to(uint8)`` (truncation) of [0, 1] images."""
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def open_work(out: Path, settings: dict[str, Any], n_chunks: int, processes: Processes) -> ChunkJob:
    """The resumable chunks of an evaluation in ``OUT.work/`` (refusing chunks written under other settings)."""
    try:
        return ChunkJob(
            out.with_name(out.name + ".work"), settings, n_chunks, processes.rank, processes.world, inside=out.parent
        )
    except ChunkError as e:
        raise EvaluationError(str(e)) from None


def merge_work(job: ChunkJob, processes: Processes, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """Wait for every process; on the main one, the chunks concatenated in order (None elsewhere)."""
    try:
        return job.merge(skip) if job.finish(processes.barrier) else None
    except ChunkError as e:
        raise EvaluationError(str(e)) from None


def now() -> str:
    """The time a result is written, to the second (UTC)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """The versions of what decides the numbers beyond the settings (image resizing, arithmetic), recorded in every
    result so that two results can be compared."""
    import PIL

    from ..runtime.version import __version__

    return {
        "restok": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }
