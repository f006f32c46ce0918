"""Watching a run: metric logs (``RUN/metrics.jsonl`` and the installed trackers) and stop requests (SIGTERM/SIGINT
turned into a checkpoint and a clean exit)."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from typing import Any

from ..runtime.files import open_nofollow
from .errors import TrainingError

__all__ = ["MetricLogger", "available_trackers", "StopRequest"]


class MetricLogger:
    """``RUN/metrics.jsonl`` (always) plus the accelerator's trackers (TensorBoard / W&B when installed)."""

    def __init__(self, run: Path, accelerator: Any, enabled: bool) -> None:
        self.path = run / "metrics.jsonl"
        self.acc = accelerator
        self.enabled = enabled

    def log(self, step: int, values: dict[str, float]) -> None:
        """Append one record (main process only)."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items()}
        # NaN is not JSON: a non-finite value is logged as null (a diverged step is stopped by the loop itself)
        record = {k: v if math.isfinite(v) else None for k, v in clean.items()}
        with open_nofollow(self.path) as f:  # a link planted as the log is refused, never appended to
            f.write(json.dumps({"step": step, **record}, allow_nan=False) + "\n")
        if self.acc.trackers:
            self.acc.log(clean, step=step)


def available_trackers(wanted: tuple[str, ...]) -> list[str]:
    """The subset of ``wanted`` whose packages are installed."""
    import importlib.util

    mods = {"tensorboard": "tensorboard", "wandb": "wandb"}
    out = []
    for t in wanted:
        if t not in mods:
            raise TrainingError(f"unknown tracker {t!r}; choose from {sorted(mods)}")
        if importlib.util.find_spec(mods[t]) is not None:
            if t == "wandb" and not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
                continue  # not configured: skip rather than prompt
            out.append(t)
    return out


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (then it checkpoints and exits)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
