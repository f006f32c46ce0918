"""The compared families through the command line and the pipeline: ``reconstruct``, ``tokenize``, ``detokenize``,
``generate`` and ``eval generation`` take a TiTok, One-D-Piece or LlamaGen model by path, with what each says about
its budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from restok import ResTokPipeline
from restok.core.registry import model_class
from tests.helpers import run_cli, write_image_folder

PRESETS = {
    "titok": "titok-tiny",
    "one-d-piece": "one-d-piece-tiny",
    "llamagen-vq": "llamagen-vq-tiny",
    "llamagen-gpt": "llamagen-gpt-tiny",
}


@pytest.fixture(scope="module")
def fam(tmp_path_factory) -> dict[str, Path]:
    """Random-weight tiny models of each family (restok's format) and a few images."""
    d = tmp_path_factory.mktemp("fam")
    out = {}
    for family, preset in PRESETS.items():
        torch.manual_seed(0)
        m = model_class(family).from_preset(preset)
        if family == "llamagen-gpt":
            torch.nn.init.normal_(m.output.weight, std=0.5)  # informative logits
        m.save_pretrained(d / preset)
        out[family] = d / preset
    out["images"] = write_image_folder(d / "img", classes=2, per_class=2)
    return out


def images(fam: dict[str, Path]) -> list[str]:
    return sorted(str(p) for p in fam["images"].rglob("*.png"))


@pytest.mark.parametrize("family, budgets", [("titok", [8]), ("one-d-piece", [1, 2, 4, 8, 16]), ("llamagen-vq", [64])])
def test_reconstruct_tokenize_detokenize(fam: dict[str, Path], tmp_path: Path, family: str, budgets: list[int]) -> None:
    tok = str(fam[family])
    r = run_cli("reconstruct", *images(fam), "--tokenizer", tok, "--tokens", "all", "--out", tmp_path / "rec")
    assert r.returncode == 0 and f"with {budgets} tokens" in r.stdout, r.stderr
    r = run_cli("tokenize", *images(fam), "--tokenizer", tok, "--out", tmp_path / "ids.npz")
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "ids.npz") as z:
        assert z["ids"].shape == (4, budgets[-1])
    r = run_cli("detokenize", tmp_path / "ids.npz", "--tokenizer", tok, "--out", tmp_path / "det")
    assert r.returncode == 0 and len(list((tmp_path / "det").glob("*.png"))) == 4, r.stderr


def test_budgets_each_family_decodes(fam: dict[str, Path], tmp_path: Path) -> None:
    r = run_cli(
        "reconstruct", *images(fam), "--tokenizer", fam["one-d-piece"], "--tokens", "3,5", "--out", tmp_path / "a"
    )
    assert r.returncode == 0 and "[3, 5]" in r.stdout  # every prefix of One-D-Piece decodes
    for family, k, words in (
        ("one-d-piece", 17, "any length from 1 to 16"),
        ("titok", 4, "[8]"),
        ("llamagen-vq", 32, "[64]"),
    ):
        r = run_cli(
            "reconstruct", *images(fam), "--tokenizer", fam[family], "--tokens", str(k), "--out", tmp_path / "b"
        )
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_llamagen_generates_and_evaluates_under_restoks_sampler(
    fam: dict[str, Path], tmp_path: Path, inception_torchscript: str
) -> None:
    models = ["--generator", fam["llamagen-gpt"], "--tokenizer", fam["llamagen-vq"]]
    r = run_cli(
        "generate",
        *models,
        "--classes",
        "1",
        "2",
        "--cfg-scale",
        "2",
        "--top-k",
        "10",
        "--seed",
        "3",
        "--out",
        tmp_path / "g",
    )
    assert r.returncode == 0 and "64 calls" in r.stdout, r.stderr
    again = run_cli(
        "generate",
        *models,
        "--classes",
        "1",
        "2",
        "--cfg-scale",
        "2",
        "--top-k",
        "10",
        "--seed",
        "3",
        "--out",
        tmp_path / "g2",
    )
    assert again.returncode == 0
    assert (tmp_path / "g" / "grid.png").read_bytes() == (
        tmp_path / "g2" / "grid.png"
    ).read_bytes()  # seeded: same bytes
    ref = tmp_path / "ref.npz"
    common = ["--inception-weights", inception_torchscript, "--no-progress"]
    assert (
        run_cli("eval", "reference", "--data", fam["images"], "--image-size", "32", "--out", ref, *common).returncode
        == 0
    )
    r = run_cli(
        "eval", "generation", *models, "--reference", ref, "--per-class", "2", "--out", tmp_path / "gen.json", *common
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "gen.json").read_text())
    assert res["num_samples"] == 20 and res["settings"]["generator"]["config"]["ar_tokens"] == 64
    assert (
        set(res["settings"]["versions"]) >= {"torch", "numpy", "pillow"}
        and len(res["settings"]["reference"]["statistics_sha256"]) == 64
    )


def test_the_pipeline_takes_every_family(fam: dict[str, Path]) -> None:
    pipe = ResTokPipeline.from_pretrained(fam["llamagen-vq"], fam["llamagen-gpt"])
    out = pipe([3, 4])
    assert len(out) == 2 and out[0].size == (32, 32)
    odp = ResTokPipeline.from_pretrained(fam["one-d-piece"])
    assert sorted(odp.reconstruct(images(fam)[:1], tokens="all")) == [1, 2, 4, 8, 16]
    assert len(odp.reconstruct(images(fam)[:1], tokens=5)) == 1
