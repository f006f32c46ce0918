"""Class names: the ImageNet-1k names shipped as data (``assets/imagenet_classes.json``, taken once from
torchvision's wheel by ``scripts/make_imagenet_classes.py``), and turning ids or names into class ids."""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Sequence
from importlib import resources

__all__ = ["imagenet_class_names", "class_names_for", "resolve_classes"]


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in index order (207 = "golden retriever")."""
    with resources.files("restok").joinpath("assets/imagenet_classes.json").open("r") as f:
        return tuple(json.load(f)["names"])


def class_names_for(num_classes: int) -> tuple[str, ...] | None:
    """Names of a generator's classes when known: ImageNet's for 1,000 classes, else None (ids only)."""
    return imagenet_class_names() if num_classes == 1000 else None


def resolve_classes(specs: Sequence[str | int], num_classes: int, names: Sequence[str] | None = None) -> list[int]:
    """Class ids from ids or names (case-insensitive), or a ValueError naming the unknown ones and close matches."""
    names = class_names_for(num_classes) if names is None else names
    lookup = {n.lower(): i for i, n in enumerate(names or ())}
    out, bad = [], []
    for spec in specs:
        text = str(spec).strip()
        if text.lstrip("-").isdigit():
            i = int(text)
            if not 0 <= i < num_classes:
                bad.append(f"{text} (ids are 0..{num_classes - 1})")
                continue
            out.append(i)
        elif text.lower() in lookup:
            out.append(lookup[text.lower()])
        else:
            close = difflib.get_close_matches(text.lower(), list(lookup), n=3)
            hint = f"; did you mean {', '.join(repr(names[lookup[c]]) for c in close)}?" if close else ""  # type: ignore[index]
            bad.append(
                f"{text!r}{hint}"
                if names
                else f"{text!r} (this generator's classes have no names: use ids 0..{num_classes - 1})"
            )
    if bad:
        raise ValueError(f"unknown class{'es' if len(bad) > 1 else ''}: {'; '.join(bad)}")
    return out
