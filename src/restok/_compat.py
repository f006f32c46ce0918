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

__all__ = ["MOVED", "MOVED_NAMES", "MOVED_ATTRIBUTES", "install", "new_path"]

MOVED: dict[str, str | tuple[str, ...]] = {
    "app": "restok.apps.web",
    "backbones": "restok.train.backbones",
    "checkpoint": "restok.hub",
    "chunks": "restok.runtime.chunks",
    "classes": "restok.data.classes",
    "codes": "restok.train.codes",
    "compiled": ("restok.sampling.compiled", "restok._legacy"),
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
    "official": ("restok.models.restok.official", "restok.models.har.official", "restok._legacy"),
    "pipeline": "restok.pipelines",
    "pixel_cnn": "restok.models.layers.pixel_cnn",
    "precision": "restok.runtime.precision",
    "pretrained": "restok.hub.pretrained",
    "quantizer": "restok.models.layers.quantizer",
    "rope": "restok.models.layers.rope",
    "search": "restok.eval.search",
    "sources": "restok.data.records",
    "tokenizer": ("restok.models.restok", "restok.eval.budgets"),
    "viz": "restok.eval.plots",
    "vit": "restok.models.layers.vit",
    # paths of the 2026-12-02 sub-packages that a family's home replaced
    "core.configs": (
        "restok.models.restok.config",
        "restok.models.har.config",
        "restok.models.layers.pixel_cnn",
        "restok.core.fields",
    ),
    "models.official": ("restok.models.restok.official", "restok.models.har.official", "restok._legacy"),
    "train.engine": (
        "restok.train.errors",
        "restok.train.ema",
        "restok.train.optim",
        "restok.train.checkpoints",
        "restok.train.monitor",
        "restok.train.loop",
        "restok.train.task",
        "restok.train.distributed",
    ),
}

# Names that left a module which still exists: ``module -> {name: the module that holds it now}``; the module answers
# them with a DeprecationWarning (PEP 562's module ``__getattr__``, set when the module is first imported).
MOVED_NAMES: dict[str, dict[str, str]] = {
    "restok.train.loop": {"ModelTask": "restok.train.task", "load_initial_weights": "restok.train.task"},
}

# Fields of requests that were renamed or joined the evaluation's options: ``module -> {class: {old: new path}}``;
# reading the old name answers from the new one with a DeprecationWarning.
MOVED_ATTRIBUTES: dict[str, dict[str, dict[str, str]]] = {
    "restok.eval.jobs": {
        "ReconstructionRequest": {"batch_size": "options.batch_size", "allow_partial": "options.allow_partial"},
        "GenerationRequest": {
            "batch_size": "options.batch_size",
            "allow_partial": "options.allow_partial",
            "recipe": "sampling",
        },
        "SearchRequest": {"batch_size": "options.batch_size", "grid_file": "grid"},
        "CompareRequest": {"batch_size": "options.batch_size", "allow_partial": "options.allow_partial"},
    },
    "restok.pipelines.samples": {"SampleRequest": {"recipe": "sampling"}, "VariationRequest": {"recipe": "sampling"}},
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
        if fullname in MOVED_NAMES or fullname in MOVED_ATTRIBUTES:
            return _patched_spec(fullname, path)
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


def _moved_name(module: str, name: str) -> Any:
    """A name that left ``module``, from where it lives now (with a warning)."""
    target = MOVED_NAMES.get(module, {}).get(name)
    if target is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} moved: import it from {target}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(target), name)


def _old_attribute(cls: str, old: str, new: str) -> property:
    """A read-only property answering a request's old field name from its new place."""

    def get(self: Any) -> Any:
        warnings.warn(f"{cls}.{old} is an old name: read .{new}", DeprecationWarning, stacklevel=2)
        value = self
        for part in new.split("."):
            value = getattr(value, part)
        return value

    return property(get, doc=f"Deprecated: ``.{new}``.")


def _patch(module: ModuleType) -> None:
    """Give a module that lost names, or whose classes lost attributes, the old ones (warning when used)."""
    name = module.__name__
    if name in MOVED_NAMES and "__getattr__" not in vars(module):
        module.__getattr__ = lambda attr: _moved_name(name, attr)  # type: ignore[attr-defined]
    for cls_name, attrs in MOVED_ATTRIBUTES.get(name, {}).items():
        cls = getattr(module, cls_name)
        for old, new in attrs.items():
            if old not in vars(cls):
                setattr(cls, old, _old_attribute(cls_name, old, new))


class _PatchingLoader(importlib.abc.Loader):
    """The real loader of a module, then :func:`_patch`."""

    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.real.exec_module(module)
        _patch(module)


def _patched_spec(fullname: str, path: Any) -> importlib.machinery.ModuleSpec | None:
    """The module's own spec, its loader wrapped to patch it once it has run."""
    spec = importlib.machinery.PathFinder.find_spec(fullname, path)
    if spec is not None and spec.loader is not None:
        spec.loader = _PatchingLoader(spec.loader)
    return spec


def _deprecated_encode_adaptive(self: Any, images: Any, **targets: Any) -> Any:
    """Deprecated: ``restok.encode_adaptive(tokenizer, images, ...)`` (a method before the sub-packages)."""
    from .eval.budgets import encode_adaptive

    warnings.warn(
        "tok.encode_adaptive(images, ...) is an old spelling: use restok.encode_adaptive(tokenizer, images, ...)",
        DeprecationWarning,
        stacklevel=2,
    )
    return encode_adaptive(self, images, **targets)


def install() -> None:
    """Make the old module paths importable and the old methods answer (once per interpreter)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
    for module in (*MOVED_NAMES, *MOVED_ATTRIBUTES):
        if module in sys.modules:  # imported before the door was installed
            _patch(sys.modules[module])
    from .models.tokenizer import Tokenizer

    if not hasattr(Tokenizer, "encode_adaptive"):
        Tokenizer.encode_adaptive = _deprecated_encode_adaptive  # type: ignore[attr-defined]
