"""Shared test helpers: tiny models and the official key lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from restok import HARGenerator, ResTok

DATA = Path(__file__).parent / "data"


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
