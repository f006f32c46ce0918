"""Atomic file writes: the one mechanism every output of the package goes through.

A file is written under a temporary name in its own folder (a hidden name that no resume scan matches), flushed and
fsynced, given the permissions an ordinary file gets under the umask, then renamed over the target: a crash or a
full disk mid-write leaves the previous file intact and never a truncated one. A symbolic link at the target is
replaced, never written through; a temporary left by a killed writer is removed by the next write of that file.

Inside an output folder (a training run, a work folder, a save folder) restok creates sub-folders with
:func:`make_dir`, which refuses any part below the folder the user named that is a symbolic link, and appends or
locks with :func:`open_nofollow`: a link planted there never redirects a write. The folder the user names may itself
be a link; that is their choice.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_write",
    "write_text",
    "write_json",
    "json_text",
    "write_bytes",
    "save_npz",
    "save_npy",
    "fsync_dir",
    "make_dir",
    "open_nofollow",
    "UnsafePathError",
    "DiskFullError",
    "disk_full_error",
    "check_finite",
    "remove_stale_temporaries",
]


class UnsafePathError(OSError):
    """A symbolic link where restok creates or appends to a file or folder inside an output folder."""


class DiskFullError(OSError):
    """A write that failed for lack of space (or quota); the message names the file."""


def _refuse_link(path: Path) -> None:
    """Raise UnsafePathError when ``path`` is a symbolic link."""
    if path.is_symlink():
        raise UnsafePathError(
            f"{path} is a symbolic link; restok does not write through links inside an output folder "
            "(remove it, or choose another folder)"
        )


def make_dir(path: str | os.PathLike, inside: str | os.PathLike | None = None) -> Path:
    """Create the folder ``path`` (with its parents); every part of it below ``inside`` (the folder the user named),
    or ``path`` itself when ``inside`` is None, must be a real folder, never a symbolic link."""
    path = Path(path)
    root = Path(inside) if inside is not None else path.parent
    try:
        below = path.relative_to(root).parts
    except ValueError:
        raise ValueError(f"{path} is not inside {root}") from None
    root.mkdir(parents=True, exist_ok=True)
    here = root
    for part in below:
        here = here / part
        _refuse_link(here)
        try:
            os.mkdir(here)
        except FileExistsError:
            _refuse_link(here)  # planted between the check and mkdir
            if not here.is_dir():
                raise NotADirectoryError(f"{here} exists and is not a folder") from None
    return path


def open_nofollow(path: str | os.PathLike, mode: str = "a") -> IO[str]:
    """Open a text file inside an output folder for appending (``"a"``) or locking (``"a+"``), creating it; a symbolic
    link there is refused (``O_NOFOLLOW``) instead of followed."""
    flags = os.O_CREAT | os.O_APPEND | (os.O_RDWR if "+" in mode else os.O_WRONLY) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or Path(path).is_symlink():
            _refuse_link(Path(path))
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a regular file")
    return os.fdopen(fd, mode)


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, name: str = "*") -> int:
    """Delete ``.NAME.PID.tmp`` files in ``folder`` whose writer process is gone (a killed job's half-written files);
    returns how many."""
    removed = 0
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        pid = tmp.name[: -len(".tmp")].rpartition(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)) and (tmp.is_file() or tmp.is_symlink()):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def check_finite(value: Any, what: str) -> Any:
    """``value`` unchanged when every number in it (nested dicts/lists) is finite, else a ValueError naming ``what``
    and the key: NaN and inf are not JSON, and a result that holds one is wrong."""

    def walk(v: Any, key: str) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{what}: {key or 'the value'} is {v}, not a finite number; nothing was written")
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{key}.{k}" if key else str(k))
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{key}[{i}]")

    walk(value, "")
    return value


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
        # the temporary is created here, as a new regular file: a link planted under its name is removed, not followed
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o600))
        write(str(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # after writing: some writers replace the file they are given
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        full = disk_full_error(e, path)
        if full is not None:
            raise full from None
        raise
    finally:
        if tmp.is_file() or tmp.is_symlink():
            tmp.unlink()
    fsync_dir(path.parent)
    remove_stale_temporaries(path.parent, path.name)
    return path


# How writers in C++ report a write that ran out of room: torch's zip writer ("unexpected pos N vs M", "file write
# failed") and safetensors (Rust's io error kinds and errnos 27 EFBIG, 28 ENOSPC, 122 EDQUOT).
_SHORT_WRITE = re.compile(
    r"unexpected pos|write failed|failed writing|StorageFull|FileTooLarge|QuotaExceeded|code: (27|28|122)\b"
)


def disk_full_error(error: BaseException, path: str | os.PathLike, what: str = "") -> DiskFullError | None:
    """A DiskFullError naming ``path`` when ``error`` (a failed write) came from a full disk, a quota or a file size
    limit -- ENOSPC/EDQUOT/EFBIG, or a C++ writer's own words for a short write, or any write error while the disk has
    no room -- else None."""
    errno_ = getattr(error, "errno", None)
    if errno_ in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or (
        isinstance(error, RuntimeError) and (_SHORT_WRITE.search(str(error)) or _disk_full(Path(path).parent))
    ):
        return DiskFullError(
            errno.ENOSPC,
            f"disk full (or a file size limit)? could not write {what}{path} "
            f"({' '.join(str(error).split())[:200]}); the previous file, if any, is intact",
        )
    return None


def _disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (almost) no space left."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data``."""
    return atomic_write(path, lambda p: Path(p).write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8)."""
    return atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def json_text(data: Any, what: str, **kwargs: Any) -> str:
    """``data`` as the indented JSON text restok writes (every number checked finite first; ``what`` names it)."""
    check_finite(data, what)
    return json.dumps(data, indent=2, allow_nan=False, **kwargs) + "\n"


def write_json(path: str | os.PathLike, data: Any, **kwargs: Any) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return write_text(path, json_text(data, str(path), **kwargs))


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
