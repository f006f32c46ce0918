"""Visualisations on tiny models: the attention bookkeeping is checked, the files are real PNGs."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from restok import viz


def test_latent_to_image_attention_masses(tiny_tok) -> None:
    x = torch.rand(2, 3, 32, 32)
    maps = viz.latent_to_image_attention(tiny_tok, x)
    assert len(maps) == tiny_tok.config.depth
    n_levels = len(tiny_tok.encoder.levels)
    for m in maps:
        mat = m["matrix"]
        assert mat.shape == (n_levels, len(m["scales"]))
        # each latent row's attention over image tokens is a part of a probability distribution
        assert (mat >= 0).all() and (mat.sum(1) <= 1 + 1e-5).all()
    # image-token scales are added coarse-first after each merge (Alg. 2)
    assert len(maps[0]["scales"]) == 1 and len(maps[-1]["scales"]) == tiny_tok.config.hierarchy_stages


def test_plots_write_pngs(tiny_tok, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    x = torch.rand(3, 3, 32, 32)
    ks = viz.reconstruction_strip(tiny_tok, x, tmp_path / "strip.png")
    assert Image.open(tmp_path / "strip.png").size[1] > 32 * (len(ks) + 1)
    viz.plot_attention(tiny_tok, x, tmp_path / "attn.png")
    stats = viz.plot_codebook_usage(torch.tensor([0, 0, 1, 3]), 4, tmp_path / "cb.png")
    assert stats["usage"] == 0.75
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "loss": 1.0 / s, "lr": 0.1}) for s in range(1, 6))
    )
    assert viz.plot_training_curves(tmp_path / "run", tmp_path / "curves.png") == ["loss"]
    for name in ("attn.png", "cb.png", "curves.png"):
        assert Image.open(tmp_path / name).size[0] > 100
