"""Devices and processes: the one rule that turns ``--device`` into a device, and the processes a launcher
(``torchrun``, ``accelerate launch``) started, as one small value that every multi-process job takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .launch import launch_env, rendezvous

__all__ = ["DEVICES", "resolve_device", "Processes", "launched"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str | torch.device) -> torch.device:
    """A device from ``--device``'s value: ``auto`` is cuda (this process's GPU under a launcher: ``LOCAL_RANK``), then
    mps, then cpu; any torch device name (``cuda:1``) is taken as it is; one that is not there is refused
    (ValueError)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", launch_env().local_rank % torch.cuda.device_count())
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name}: unknown device; choose one of {', '.join(DEVICES)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"--device {name}: MPS is not available (use --device cpu or auto)")
    return dev


@dataclass(frozen=True)
class Processes:
    """The processes of one job: this one's ``rank``, how many there are (``world``), how to wait for all of them
    (``barrier``, None for one process) and whether this one draws progress bars (the main one only)."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not one of {self.world} processes")

    @property
    def main(self) -> bool:
        """True on the process that merges and writes the results."""
        return self.rank == 0

    @property
    def shows_progress(self) -> bool:
        """Progress bars on the main process only, when asked for."""
        return self.progress and self.main

    def wait(self) -> None:
        """Wait until every process gets here."""
        if self.barrier is not None:
            self.barrier()


def launched(device: str = "auto", progress: bool = True) -> tuple[Processes, torch.device]:
    """The processes and this process's device: from ``torchrun`` / ``accelerate launch`` when launched that way
    (through Accelerate's process state), else this one process on :func:`resolve_device`'s device."""
    dev = resolve_device(device)
    env = launch_env()  # the launcher's variables, checked before anything waits on them
    try:
        from accelerate import PartialState
    except ImportError:
        if env.world > 1:
            raise ValueError(
                "a multi-process launch needs Hugging Face Accelerate: pip install 'restok[train]'"
            ) from None
        return Processes(progress=progress), dev
    rendezvous(dev.type)  # the processes join within the start-up timeout, or the missing ranks are named
    state = PartialState(cpu=dev.type == "cpu")
    return Processes(state.process_index, state.num_processes, state.wait_for_everyone, progress), state.device
