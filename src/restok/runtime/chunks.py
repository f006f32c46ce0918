"""The one runner of resumable jobs split in numbered chunks over processes, then merged: code extraction and
both evaluations.

A job has a work folder and the settings that shape its output. The settings are recorded there when the job
starts and a rerun under other ones is refused, naming them, so that a resumed job never mixes chunks made two ways.
Chunk ``k`` is done by process ``k mod world``; a chunk is finished once its marker file exists (files are written
atomically, and temporary names never match a marker), so a rerun after a kill does only what is missing. A marker is
trusted only when it is a regular file this job wrote: a link planted in the folder (to another job's chunk, or to
nothing) is never taken for a finished chunk, and an ``.npz`` chunk carries the digest of its job's settings, so a
chunk copied from another job is named and redone. The main process waits for the others, then merges or
finalises.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .files import make_dir, remove_stale_temporaries, save_npz, write_json, write_text
from .inputs import npz_headers, read_json_input, read_npz, read_text_input
from .locks import FolderLock

log = logging.getLogger("restok")
JOB_KEY = "__job__"  # the digest of the job's settings inside every .npz chunk

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
        self.digest = np.frombuffer(
            hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).digest(), np.uint8
        )
        if path.exists() or path.is_symlink():
            try:
                old = read_json_input(path, "job settings", follow_links=False)
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

    def _trusted(self, path: Path) -> bool:
        """Whether a marker is a regular file (not a link) and, for an ``.npz`` chunk, this job's."""
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                return False
            if path.suffix != ".npz":
                return True
            digest = read_npz(path, "chunk", keys=(JOB_KEY,), follow_links=False)[JOB_KEY]
        except (OSError, ValueError):
            return False
        return np.array_equal(digest, self.digest)

    def done(self) -> set[int]:
        """Chunks whose marker exists and is this job's."""
        found = {int(m.group(1)): p for p in self.work.iterdir() if (m := self._pattern.match(p.name))}
        return {c for c, p in found.items() if self._trusted(p)}

    def todo(self) -> list[int]:
        """This process's chunks that are not done yet, in order; a marker that is not this job's (a planted link, a
        chunk of other settings, a damaged file) is named, removed and redone."""
        finished = self.done()
        mine = [c for c in range(self.rank, self.n_chunks, self.world) if c not in finished]
        for c in mine:
            p = self.path(c)
            if p.exists() or p.is_symlink():
                log.warning("%s is not a chunk this job wrote (a link, or written under other settings); redoing it", p)
                p.unlink()
        return mine

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
        """Write a chunk's arrays as its marker ``.npz``, with the digest of the job's settings."""
        save_npz(self.path(chunk), **arrays, **{JOB_KEY: self.digest})

    def note_skipped(self, lines: list[str]) -> None:
        """Record unreadable inputs of this process (merged by :meth:`skipped`)."""
        if lines:
            write_text(self.work / f"skipped-rank{self.rank}.txt", "\n".join(lines) + "\n")

    def skipped(self) -> list[str]:
        """Every process's unreadable inputs."""
        files = sorted(self.work.glob("skipped-rank*.txt"))
        return [
            ln for f in files for ln in read_text_input(f, "skipped-file list", follow_links=False).splitlines() if ln
        ]

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

    def load(self, chunk: int, skip: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """The arrays of a chunk ``.npz`` (its headers checked first; a link is refused), but the job's digest and the
        ``skip`` ones, which are not read."""
        keys = tuple(k for k in npz_headers(self.path(chunk), "chunk", follow_links=False) if k not in {JOB_KEY, *skip})
        return read_npz(self.path(chunk), "chunk", keys=keys, follow_links=False)

    def merge(self, skip: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Concatenate the chunks' arrays in chunk order; chunks with no rows (all inputs unreadable) are left out."""
        parts = [self.load(k, skip) for k in range(self.n_chunks)]
        full = [p for p in parts if p and len(next(iter(p.values())))]
        if not full:
            raise ChunkError(f"no input could be used (see the skipped-file lists in {self.work})")
        return {key: np.concatenate([p[key] for p in full]) for key in full[0]}
