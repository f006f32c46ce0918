"""Reading what a user hands in -- and what restok reads back from its own output folders --, with limits checked
before the work: regular files only (a FIFO or a device would block or never end; a link planted in an output folder
is refused where it is read back), a size bound on text and JSON files and on files a dataset names, a bound on parsed
YAML counted with its aliases expanded (ten lines of nested aliases stand for billions of nodes once anything walks
them), and arrays whose ``.npy`` headers are read and checked -- dtype, shape, declared size against the bytes that
are there, elements against a bound -- before any array is allocated (:func:`read_npz`, :func:`read_npy`).
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "regular_file",
    "NotRegularFileError",
    "read_text_input",
    "read_json_input",
    "read_bytes_input",
    "load_yaml",
    "read_npz",
    "read_npy",
    "npz_headers",
    "ArrayHeader",
    "ArrayLimitError",
    "MAX_TEXT_BYTES",
    "MAX_YAML_NODES",
    "MAX_ARRAY_ELEMENTS",
    "MAX_INPUT_BYTES",
]

MAX_TEXT_BYTES = 16 << 20  # a config, recipe or grid file: far above any real one
MAX_YAML_NODES = 100_000  # scalars, lists and mappings, aliases counted as often as they are used
# One array of an input file (a sample batch, a reference, a code shard, a chunk): 2**33 elements is 8 GiB of uint8,
# more than a 50,000-image 256-px sample batch (9.8e9 bytes would be refused: such batches are streamed by the doctor,
# which reads headers only). RESTOK_MAX_ARRAY_ELEMENTS raises it.
MAX_ARRAY_ELEMENTS = int(os.environ.get("RESTOK_MAX_ARRAY_ELEMENTS", 1 << 33))
MAX_INPUT_BYTES = 1 << 30  # one file a dataset names (an image): far above any real one


class NotRegularFileError(ValueError):
    """An input path that names a FIFO, a device, a socket or a folder where a file is read."""


class ArrayLimitError(ValueError):
    """An array file whose header declares what cannot be read: an object dtype, more elements than allowed, or more
    than the file holds."""


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def regular_file(path: str | os.PathLike, what: str = "file", follow_links: bool = True) -> Path:
    """``path`` when it names a regular file (links followed, unless ``follow_links`` is False: a file restok reads
    back from its own output folder is never a link); anything else is refused before it is opened: reading a FIFO or
    a device would block or never end. ``what`` names the input in the message."""
    try:
        mode = (os.stat if follow_links else os.lstat)(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} {path}: no such file") from None
    if stat.S_ISLNK(mode):
        raise NotRegularFileError(f"{what} {path} is a symbolic link, not a file this job wrote; remove it")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise NotRegularFileError(f"{what} {path} is {kind}, not a regular file")
    return Path(path)


def read_text_input(
    path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_TEXT_BYTES, follow_links: bool = True
) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``, or one error naming ``what`` and the file (a link
    refused when ``follow_links`` is False: a file restok reads back from its own output folder)."""
    p = regular_file(path, what, follow_links)
    size = p.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{what} {p} has {size:,} bytes, more than the {max_bytes:,} a {what} may have")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {p} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json_input(
    path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_TEXT_BYTES, follow_links: bool = True
) -> Any:
    """The JSON of a regular file of at most ``max_bytes``, or one ValueError naming ``what``, the file and the
    problem."""
    try:
        return json.loads(read_text_input(path, what, max_bytes, follow_links))
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def read_bytes_input(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (a dataset's row that names an image by path: never a
    device, a FIFO or an endless file)."""
    p = regular_file(path, what)
    size = p.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{what} {p} has {size:,} bytes, more than the {max_bytes:,} a {what} may have")
    with open(p, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while being read
        raise ValueError(f"{what} {p} is larger than the {max_bytes:,} bytes a {what} may have")
    return data


def load_yaml(text: str, what: str, max_nodes: int = MAX_YAML_NODES) -> Any:
    """``yaml.safe_load(text)`` after checking that the document, aliases expanded, has at most ``max_nodes`` nodes
    and no alias that contains itself; ``what`` names the source in errors."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_size(node, {}, set(), max_nodes)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
        if size > max_nodes:
            raise ValueError(
                f"{what}: the YAML document expands to more than {max_nodes:,} values (aliases counted as "
                "often as they are used); a config is far smaller"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ValueError(f"{what}: not valid YAML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise ValueError(f"{what}: the YAML document is nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(node: Any, sizes: dict[int, int], open_: set[int], limit: int) -> int:
    """Nodes under ``node`` with every alias expanded (memoised per node, stopping once past ``limit``)."""
    import yaml

    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise ValueError("the YAML document has an alias that contains itself")
    open_.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [x for pair in node.value for x in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, sizes, open_, limit)
        if total > limit:
            break
    open_.discard(key)
    sizes[key] = total
    return total


# ------------------------------------------------------------------------------------------- arrays
@dataclass(frozen=True)
class ArrayHeader:
    """What an ``.npy`` header declares: dtype, shape, order, and the bytes of data that follow it."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def size(self) -> int:
        """Elements the header declares."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of data the header declares."""
        return self.size * self.dtype.itemsize


def _read_header(f: IO[bytes], what: str, max_elements: int | None = MAX_ARRAY_ELEMENTS) -> ArrayHeader:
    """The header of the ``.npy`` stream ``f`` (its position left at the data), refusing object arrays and arrays of
    more than ``max_elements`` elements (None: no bound -- for a reader that streams the array in chunks)."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f, max_header_size=1 << 16)
    except (ValueError, EOFError, OSError) as e:
        raise ArrayLimitError(f"{what}: not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise ArrayLimitError(f"{what}: holds Python objects (dtype {dtype}); restok reads numeric arrays only")
    header = ArrayHeader(dtype, tuple(int(n) for n in shape), bool(fortran))
    if any(n < 0 for n in header.shape) or (max_elements is not None and header.size > max_elements):
        raise ArrayLimitError(
            f"{what}: its header declares an array of shape {header.shape} ({header.size:,} elements), more than the "
            f"{max_elements:,} allowed (RESTOK_MAX_ARRAY_ELEMENTS)"
        )
    return header


def npz_headers(
    path: str | os.PathLike,
    what: str = "file",
    follow_links: bool = True,
    max_elements: int | None = MAX_ARRAY_ELEMENTS,
) -> dict[str, ArrayHeader]:
    """The headers of every array of an ``.npz`` (nothing allocated), each checked against the bytes its member
    holds: a header that declares more data than there is is refused here, not when the array is reshaped."""
    p = regular_file(path, what, follow_links)
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArrayLimitError(f"{what} {p} is not an .npz archive ({e})") from None
    headers = {}
    with zf:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with zf.open(info) as f:
                h = _read_header(f, f"{what} {p}, array {name!r}", max_elements)
                data = info.file_size - f.tell()
            if h.nbytes != data:
                raise ArrayLimitError(
                    f"{what} {p}, array {name!r}: its header declares {h.shape} {h.dtype} ({h.nbytes:,} bytes) but "
                    f"the file holds {data:,} bytes of data; the file is damaged"
                )
            headers[name] = h
    return headers


def read_npz(
    path: str | os.PathLike,
    what: str = "file",
    keys: tuple[str, ...] | None = None,
    follow_links: bool = True,
) -> dict[str, np.ndarray]:
    """The arrays (``keys``, default all) of an ``.npz``, after :func:`npz_headers` has checked every header."""
    headers = npz_headers(path, what, follow_links)
    missing = [k for k in keys or () if k not in headers]
    if missing:
        raise ArrayLimitError(f"{what} {path} has no {missing} (it holds {sorted(headers)})")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in (keys or tuple(headers))}


def read_npy(path: str | os.PathLike, what: str = "file", mmap: bool = False, follow_links: bool = True) -> np.ndarray:
    """One ``.npy`` array, its header checked first (``mmap``: mapped, not read)."""
    p = regular_file(path, what, follow_links)
    with open(p, "rb") as f:
        h = _read_header(f, f"{what} {p}")
        data = p.stat().st_size - f.tell()
    if h.nbytes != data:
        raise ArrayLimitError(
            f"{what} {p}: its header declares {h.shape} {h.dtype} ({h.nbytes:,} bytes) but the file holds {data:,} "
            "bytes of data; the file is damaged"
        )
    return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
