"""Shared fixtures: tiny models, an image folder, the stand-in FID Inception; and the ``slow`` marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from restok import HARGenerator, ResTok

from .helpers import TinyInception, write_image_folder


def _torchvision_cpu_shim() -> object | None:
    """Let PyPI's CUDA-only torchvision import beside a CPU build of torch (tests only, never the library).

    Its compiled ops cannot load without the CUDA libraries, and ``import torchvision`` then fails on the missing
    ``torchvision::nms`` schema; defining the two schemas first (no kernels: nothing here calls them) lets timm
    import. Done only when torch is a CPU build and torchvision's own library really fails to load.
    """
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if torch.version.cuda is not None or spec is None or not spec.submodule_search_locations:
        return None
    libs = [p for d in spec.submodule_search_locations for p in Path(d).glob("_C*.so")]
    try:
        for p in libs:
            torch.ops.load_library(str(p))
        return None
    except OSError:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        return lib


_TORCHVISION_SHIM = _torchvision_cpu_shim()

# glibc returns freed blocks of more than a few MiB to the kernel and takes them back page by page on the next
# allocation: with the tensors of many small models made and freed, the workers spent ~10 % of their time in page
# faults (78 s of system time in a 6-minute run). Keeping freed memory in the process removes most of it. Set here,
# before pytest-xdist starts its workers and before any test starts a process, so that all of them inherit it.
for _name, _value in (("MALLOC_MMAP_THRESHOLD_", "1073741824"), ("MALLOC_TRIM_THRESHOLD_", "4294967296")):
    os.environ.setdefault(_name, _value)

if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: the workers share the cores
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def inception_torchscript(tmp_path_factory) -> str:
    """A TorchScript stand-in for the FID Inception, through the real loading path."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inc") / "fid_inception_torchscript.pt"
    torch.jit.script(TinyInception()).save(str(path))
    return str(path)


@pytest.fixture
def tiny_tok() -> ResTok:
    """A seeded restok-tiny in eval mode."""
    torch.manual_seed(0)
    return ResTok.from_preset("restok-tiny").eval()


@pytest.fixture
def tiny_gen() -> HARGenerator:
    """A seeded har-tiny in eval mode, with a non-zero output layer so logits are informative."""
    torch.manual_seed(0)
    gen = HARGenerator.from_preset("har-tiny").eval()
    torch.nn.init.normal_(gen.output.weight, std=0.5)
    return gen


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two classes of four images each."""
    return write_image_folder(tmp_path / "images")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny tokenizer and a matching tiny generator saved in our format."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    ResTok.from_preset("restok-tiny").save_pretrained(d / "tok")
    gen = HARGenerator.from_preset("har-tiny")
    torch.nn.init.normal_(gen.output.weight, std=0.5)
    gen.save_pretrained(d / "gen")
    return {"tok": d / "tok", "gen": d / "gen"}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the output folder that planted links point at; it must never change."""
    f = tmp_path / "outside" / "precious.txt"
    f.parent.mkdir()
    f.write_text("precious\n")
    return f


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules that hold slow tests first, each module's tests kept together and in order: two workers then
    share the long tests from the start instead of one of them finishing the last long test alone."""
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow") is not None}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (item.module.__name__ not in slow_modules, order[id(item)]))
