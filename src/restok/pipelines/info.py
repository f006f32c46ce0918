"""``restok info``: every registered family's presets with their sizes, and a seeded round trip on the tiny presets
(encode, decode every prefix, generate with the released recipe) -- what a fresh installation can do, in seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..core.registry import model_classes
from ..models.har import HARGenerator
from ..models.restok import ResTok
from ..sampling import RELEASED_RECIPE

__all__ = ["PresetRow", "presets", "RoundTrip", "round_trip"]


@dataclass(frozen=True)
class PresetRow:
    """One preset: its kind and name, its config's one-line summary and its parameter count."""

    kind: str
    name: str
    summary: str
    parameters: int


def presets() -> list[PresetRow]:
    """Every registered family's presets (tokenizers, then generators), counted on the meta device."""
    return [
        PresetRow(kind, name, cfg.summary(), cls.parameter_count(cfg))
        for kind in ("tokenizer", "generator")
        for cls in model_classes(kind)
        for name, cfg in cls.presets.items()
    ]


@dataclass
class RoundTrip:
    """What the round trip on the tiny presets produced, and how long each part took."""

    image_shape: list[int]
    ids_shape: list[int]
    prefixes: list[int]
    coding_seconds: float
    calls: int
    samples_shape: list[int]
    sampling_seconds: float


@torch.no_grad()
def round_trip(seed: int = 0) -> RoundTrip:
    """Seeded random tiny models: encode two random images, decode every prefix, generate two samples."""
    torch.manual_seed(seed)
    tok = ResTok.from_preset("restok-tiny").eval()
    gen = HARGenerator.from_preset("har-tiny").eval()
    S = tok.config.image_size
    images = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    ids = tok.encode(images)
    recon = {k: tok.decode(ids[:, :k]) for k in tok.prefix_lengths}
    t1 = time.perf_counter()
    samples = gen.generate([0, 1], RELEASED_RECIPE, generator=torch.Generator().manual_seed(seed))
    t2 = time.perf_counter()
    return RoundTrip(
        list(images.shape), list(ids.shape), list(recon), t1 - t0, gen.num_steps, list(samples.shape), t2 - t1
    )
