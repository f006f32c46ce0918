"""Progress bars on standard error, the same for every long job (tqdm)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress"]


def progress(
    it: Iterable[Any] | None = None, desc: str = "", total: int | None = None, enabled: bool = True, unit: str = "it"
) -> Any:
    """A tqdm bar over ``it`` (or a manual one when ``it`` is None) on stderr; a silent one when not ``enabled``."""
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True, disable=not enabled, unit=unit)
