"""One job per folder: an exclusive lock on ``FOLDER/.restok.lock`` held while a training run, a code extraction or
an evaluation writes there. It is an OS file lock (``flock``), so it is released when the process ends in any way,
and the lock of a dead process never blocks a new job; the file names the holder for the message. Within one process
a new job on a folder takes over the lock of an earlier one there (a job that failed and was retried in a notebook)."""

from __future__ import annotations

import os
import socket
import time
import weakref
from pathlib import Path
from typing import IO, Any

from .files import open_nofollow

__all__ = ["FolderLock", "LockError"]


class LockError(RuntimeError):
    """The folder is in use by another running job."""


_HELD: weakref.WeakValueDictionary[str, FolderLock] = weakref.WeakValueDictionary()


class FolderLock:
    """Hold ``folder``'s lock for the life of the object (or of a ``with`` block); ``what`` names the job."""

    def __init__(self, folder: str | os.PathLike, what: str) -> None:
        self.path = Path(folder) / ".restok.lock"
        self.what = what
        self._file: IO[str] | None = None
        self.acquire()

    def acquire(self) -> None:
        """Take the lock, or raise a LockError naming the process that holds it."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        earlier = _HELD.get(key)
        if earlier is not None:
            earlier.release()
        f = open_nofollow(self.path, "a+")  # a link planted as the lock file is refused, never written through
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise LockError(
                f"{self.path.parent} is in use by a running restok job ({holder}); wait for it to end, or use another "
                "folder"
            ) from None
        f.truncate(0)
        f.write(
            f"{self.what}, pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        )
        f.flush()
        self._file = f
        _HELD[key] = self

    def release(self) -> None:
        """Let the lock go (also done when the process ends)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
