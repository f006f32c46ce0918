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
