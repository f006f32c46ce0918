"""Reading what a user hands in, with limits checked before the work: regular files only (a FIFO or a device would
block or never end), a size bound on text files, and a bound on parsed YAML counted with its aliases expanded (ten
lines of nested aliases stand for billions of nodes once anything walks them).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["regular_file", "NotRegularFileError", "read_text_input", "load_yaml", "MAX_TEXT_BYTES", "MAX_YAML_NODES"]

MAX_TEXT_BYTES = 16 << 20  # a config, recipe or grid file: far above any real one
MAX_YAML_NODES = 100_000  # scalars, lists and mappings, aliases counted as often as they are used


class NotRegularFileError(ValueError):
    """An input path that names a FIFO, a device, a socket or a folder where a file is read."""


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` when it names a regular file (links followed); anything else is refused before it is opened: reading
    a FIFO or a device would block or never end. ``what`` names the input in the message."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} {path}: no such file") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise NotRegularFileError(f"{what} {path} is {kind}, not a regular file")
    return Path(path)


def read_text_input(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``, or one error naming ``what`` and the file."""
    p = regular_file(path, what)
    size = p.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{what} {p} has {size:,} bytes, more than the {max_bytes:,} a {what} may have")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {p} is not UTF-8 text ({e.reason} at byte {e.start})") from None


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
