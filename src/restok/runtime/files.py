"""Atomic file writes: the one mechanism every output of the package goes through.

A file is written under a temporary name in its own folder (a hidden name that no resume scan matches), flushed and
fsynced, given the permissions an ordinary file gets under the umask, then renamed over the target: a crash or a
full disk mid-write leaves the previous file intact and never a truncated one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["atomic_write", "write_text", "write_json", "write_bytes", "save_npz", "save_npy", "fsync_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that a rename inside it survives a power loss (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then fsync it and rename it over ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # after writing: some writers replace the file they are given
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data``."""
    return atomic_write(path, lambda p: Path(p).write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8)."""
    return atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any, **kwargs: Any) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return write_text(path, json.dumps(data, indent=2, **kwargs) + "\n")


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Atomically write an ``.npz`` at exactly ``path`` (numpy would append ``.npz`` to other names)."""

    def write(p: str) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Atomically write one ``.npy`` array."""

    def write(p: str) -> None:
        with open(p, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)
