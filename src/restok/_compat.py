"""The one door for old module paths: restok's paths before its sub-packages (``restok.metrics``, ``restok.tokenizer``,
...) and before each model family had one home (``restok.core.configs``, ``restok.models.official``) keep working
without files. ``import restok.metrics`` gives the module that holds those names now, with a DeprecationWarning naming
the new path; a path whose names now live in several modules gives a module that looks each name up in them in turn.
restok's own code, tests and benchmarks use the new paths only."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["MOVED", "install", "new_path"]

MOVED: dict[str, str | tuple[str, ...]] = {
    "app": "restok.apps.web",
    "backbones": "restok.train.backbones",
    "checkpoint": "restok.hub",
    "chunks": "restok.runtime.chunks",
    "classes": "restok.data.classes",
    "codes": "restok.train.codes",
    "compiled": "restok.sampling.compiled",
    "config": (
        "restok.models.restok.config",
        "restok.models.har.config",
        "restok.models.layers.pixel_cnn",
        "restok.core.fields",
    ),
    "convert": "restok.models.auto",
    "datasets": "restok.data.embedded",
    "demo": "restok.apps.demo",
    "evaluation": "restok.eval",
    "generator": "restok.models.har",
    "hierarchy": "restok.core.hierarchy",
    "images": "restok.data.images",
    "inception": "restok.eval.inception",
    "io": "restok.runtime.files",
    "lock": "restok.runtime.locks",
    "losses": "restok.train.losses",
    "metrics": "restok.eval.metrics",
    "official": ("restok.models.restok.official", "restok.models.har.official"),
    "pipeline": "restok.pipelines",
    "pixel_cnn": "restok.models.layers.pixel_cnn",
    "precision": "restok.runtime.precision",
    "pretrained": "restok.hub.pretrained",
    "quantizer": "restok.models.layers.quantizer",
    "rope": "restok.models.layers.rope",
    "search": "restok.eval.search",
    "sources": "restok.data.records",
    "tokenizer": "restok.models.restok",
    "viz": "restok.eval.plots",
    "vit": "restok.models.layers.vit",
    # paths of the 2026-12-02 sub-packages that a family's home replaced
    "core.configs": (
        "restok.models.restok.config",
        "restok.models.har.config",
        "restok.models.layers.pixel_cnn",
        "restok.core.fields",
    ),
    "models.official": ("restok.models.restok.official", "restok.models.har.official"),
}


def new_path(old: str) -> str:
    """Where the names of ``restok.<old>`` live now, in words."""
    target = MOVED[old]
    return target if isinstance(target, str) else " / ".join(target)


class _Merged(ModuleType):
    """A module whose names are looked up in several modules, in order (an old path whose names were split)."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"Deprecated path of restok; its names now live in {', '.join(targets)}.")
        self._targets = targets

    def __getattr__(self, attr: str) -> Any:
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self) -> list[str]:
        return sorted({n for t in self._targets for n in dir(importlib.import_module(t))})


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``restok.<old path>`` and hands out the module it moved to (its own ``__spec__`` kept)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.partition(".")
        if prefix != "restok" or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        old = spec.name.partition(".")[2]
        warnings.warn(
            f"restok.{old} is an old path: import from {new_path(old)} instead", DeprecationWarning, stacklevel=3
        )
        target = MOVED[old]
        if isinstance(target, tuple):
            module: ModuleType = _Merged(spec.name, target)
            self._spec = None
            return module
        module = importlib.import_module(target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        if self._spec is not None:
            module.__spec__ = (
                self._spec
            )  # the import machinery set the alias's spec on the real module: put its own back


def install() -> None:
    """Make the old module paths importable (once per interpreter)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
