"""The one runner of resumable jobs split in numbered chunks over processes, then merged: code extraction and
both evaluations.

A job has a work folder and the settings that shape its output. The settings are recorded there when the job
starts and a rerun under other ones is refused, naming them, so that a resumed job never mixes chunks made two ways.
Chunk ``k`` is done by process ``k mod world``; a chunk is finished once its marker file exists (files are written
atomically, and temporary names never match a marker), so a rerun after a kill does only what is missing. The
main process waits for the others, then merges or finalises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .files import make_dir, remove_stale_temporaries, save_npz, write_json, write_text
from .locks import FolderLock

__all__ = ["ChunkError", "ChunkJob"]


class ChunkError(RuntimeError):
    """A job folder that cannot be resumed as asked (other settings, missing chunks)."""


class ChunkJob:
    """``n_chunks`` chunks of a job in ``work``; ``marker`` formats the file whose presence marks chunk k done."""

    def __init__(
        self,
        work: str | Path,
        settings: dict[str, Any],
        n_chunks: int,
        rank: int = 0,
        world: int = 1,
        marker: str = "chunk-{:06d}.npz",
        record: str = "settings.json",
        inside: str | Path | None = None,
    ) -> None:
        self.work, self.n_chunks, self.rank, self.world, self.marker = Path(work), n_chunks, rank, world, marker
        # ``inside``: the folder the user named, when the work folder is one restok derives (never a planted link)
        make_dir(self.work, inside) if inside is not None else self.work.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            remove_stale_temporaries(self.work)  # half-written files of a killed run
        # one job per folder: the main process holds the folder's lock until this object goes away
        self.lock = FolderLock(self.work, f"job in {self.work.name}") if rank == 0 else None
        try:
            self._check_settings(settings, self.work / record)
        except BaseException:
            self.close()
            raise
        head, _, tail = marker.partition("{:0")  # e.g. "chunk-", "6d}.npz"
        width, _, suffix = tail.partition("d}")
        self._pattern = re.compile(f"^{re.escape(head)}(\\d{{{int(width)}}}){re.escape(suffix)}$")

    def _check_settings(self, settings: dict[str, Any], path: Path) -> None:
        """Record the settings, or refuse a folder that holds work done under other ones."""
        self.settings = json.loads(json.dumps(settings, default=str))  # the form it takes on disk
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                old = None
            if not isinstance(old, dict):
                raise ChunkError(f"{path} is unreadable; delete {self.work} to start over")
            changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            if changed:
                raise ChunkError(
                    f"{self.work} holds work done with other settings ({', '.join(changed)}); delete it to start over, "
                    "or rerun with the settings that wrote it"
                )
        elif self.rank == 0:
            write_json(path, self.settings)

    def close(self) -> None:
        """Release the folder's lock (the job is over, or failed)."""
        if self.lock is not None:
            self.lock.release()

    def path(self, chunk: int) -> Path:
        """The marker file of ``chunk``."""
        return self.work / self.marker.format(chunk)

    def done(self) -> set[int]:
        """Chunks whose marker exists."""
        return {int(m.group(1)) for p in self.work.iterdir() if (m := self._pattern.match(p.name))}

    def todo(self) -> list[int]:
        """This process's chunks that are not done yet, in order."""
        finished = self.done()
        return [c for c in range(self.rank, self.n_chunks, self.world) if c not in finished]

    def run(
        self,
        compute: Callable[[int], dict[str, np.ndarray]],
        bar: Callable[[list[int]], Iterable[int]] = iter,
        skipped: Callable[[], list[str]] = list,
    ) -> None:
        """Do this process's chunks that are not done yet: ``compute(k)`` gives chunk k's arrays, saved as its marker;
        ``bar`` wraps the chunks (a progress bar); ``skipped()`` names the inputs that could not be used, recorded
        for :meth:`skipped` once every chunk of this process is saved."""
        for chunk in bar(self.todo()):
            self.save(chunk, compute(chunk))
        self.note_skipped(skipped())

    def save(self, chunk: int, arrays: dict[str, np.ndarray]) -> None:
        """Write a chunk's arrays as its marker ``.npz``."""
        save_npz(self.path(chunk), **arrays)

    def note_skipped(self, lines: list[str]) -> None:
        """Record unreadable inputs of this process (merged by :meth:`skipped`)."""
        if lines:
            write_text(self.work / f"skipped-rank{self.rank}.txt", "\n".join(lines) + "\n")

    def skipped(self) -> list[str]:
        """Every process's unreadable inputs."""
        return [ln for f in sorted(self.work.glob("skipped-rank*.txt")) for ln in f.read_text().splitlines() if ln]

    def finish(self, barrier: Callable[[], None] | None) -> bool:
        """Wait for every process; True on the main process, which then finds every chunk done or raises."""
        if barrier is not None:
            barrier()
        if self.rank != 0:
            return False
        missing = sorted(set(range(self.n_chunks)) - self.done())
        if missing:
            raise ChunkError(
                f"chunks {missing[:10]} of {self.work} are missing; run the same command again to finish them"
            )
        return True

    def load(self, chunk: int) -> Any:
        """The arrays of a chunk ``.npz``."""
        return np.load(self.path(chunk), allow_pickle=False)

    def merge(self, skip: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Concatenate the chunks' arrays in chunk order; chunks with no rows (all inputs unreadable) are left out."""
        parts = [self.load(k) for k in range(self.n_chunks)]
        full = [p for p in parts if len(p[p.files[0]])]
        if not full:
            raise ChunkError(f"no input could be used (see the skipped-file lists in {self.work})")
        skip = set(skip)
        return {key: np.concatenate([p[key] for p in full]) for key in full[0].files if key not in skip}
