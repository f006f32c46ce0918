"""Shared test helpers: tiny models and the official key lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from restok import HARGenerator, ResTok

DATA = Path(__file__).parent / "data"


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


STAND_IN_FEATURES = 64


class _TinyInception(torch.nn.Module):
    """Stands in for the FID Inception: same interface (299 px in [-1, 1) -> (B, F)), with F = 64 features instead of
    2,048 so that the exact SciPy ``sqrtm`` FID takes milliseconds, not the ~12 s of a 2048-d one on 2 cores."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 7, stride=7)
        self.fc = torch.nn.Linear(8 * 16, STAND_IN_FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4)
        return torch.relu(self.fc(h.flatten(1)))


@pytest.fixture(scope="session")
def inception_torchscript(tmp_path_factory) -> str:
    """A TorchScript stand-in for the FID Inception, through the real loading path."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inc") / "fid_inception_torchscript.pt"
    torch.jit.script(_TinyInception()).save(str(path))
    return str(path)



def official_keys(kind: str) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the official tokenizer/generator checkpoints (from the reference key lists)."""
    out = {}
    for line in (DATA / f"official-{kind}-keys.tsv").read_text().splitlines():
        name, shape, _ = line.split("\t")
        out[name] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return out


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


def write_image_folder(root: Path, classes: int = 2, per_class: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """A class-per-folder tree of small random PNGs whose dominant colour channel is the class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = (rng.random((*size, 3)) * 120).astype("uint8")
            a[:, :, c % 3] = 220
            Image.fromarray(a).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two classes of four images each."""
    return write_image_folder(tmp_path / "images")


def require(module: str):  # type: ignore[no-untyped-def]
    """Import an optional test dependency: skip when it is missing locally, fail under CI (which installs it)."""
    import importlib
    import os

    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def require_compiler() -> None:
    """Inductor's CPU kernels need a C++ compiler: skip without one locally, fail under CI (which installs g++)."""
    import os
    import shutil

    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        if os.environ.get("RESTOK_REQUIRE_COMPILER") or os.environ.get("CI"):
            pytest.fail("no C++ compiler (g++) for torch.compile's CPU backend; CI installs it")
        pytest.skip("no C++ compiler for torch.compile's CPU backend")
