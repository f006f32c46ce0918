"""Module paths of restok before its sub-packages (``restok.metrics``, ``restok.tokenizer``, ...), kept working
without files: ``import restok.metrics`` and ``restok.metrics`` give the module that holds those names now."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

__all__ = ["MOVED", "install"]

MOVED = {
    "app": "restok.apps.web",
    "backbones": "restok.train.backbones",
    "checkpoint": "restok.hub",
    "chunks": "restok.runtime.chunks",
    "classes": "restok.data.classes",
    "codes": "restok.train.codes",
    "compiled": "restok.sampling.compiled",
    "config": "restok.core.configs",
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
    "official": "restok.models.official",
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
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``restok.<old name>`` and hands out the module it moved to (its own ``__spec__`` kept)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.partition(".")
        if prefix != "restok" or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name.partition(".")[2]])
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import machinery set the alias's spec on the real module: put its own back


def install() -> None:
    """Make the old module paths importable (once per interpreter)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
