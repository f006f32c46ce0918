"""Embedded data, and the demo (shortened, on seeded tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from restok import HARGenerator, ResTok
from restok.data import open_image_source
from restok.data.embedded import MNISTDigits, load_mnist
from restok.eval.metrics import psnr


def test_mnist_split_sizes_and_disjointness() -> None:
    xtr, ytr = load_mnist("train")
    xte, yte = load_mnist("test")
    assert xtr.shape == (4000, 28, 28) and xte.shape == (1000, 28, 28) and xtr.dtype == np.uint8
    assert np.bincount(ytr).tolist() == [400] * 10 and np.bincount(yte).tolist() == [100] * 10
    train_hashes = {d.tobytes() for d in xtr}
    assert sum(d.tobytes() in train_hashes for d in xte) == 0
    with pytest.raises(ValueError, match="unknown MNIST split"):
        load_mnist("val")


@pytest.mark.slow
def test_embedded_photos_as_an_image_source(tmp_path) -> None:
    """scikit-image's sample photos (shipped in its wheel) as ordinary data: decodable, usable for reconstruction."""
    pytest.importorskip("skimage")
    from restok.data import ImageDataset, decode_image
    from restok.data.embedded import skimage_photos

    src = open_image_source("embedded:photos")
    assert len(src) == 8 and src.num_classes == 0 and src.records[0].label == -1
    first = decode_image(src.records[0].read())
    assert first.mode == "RGB" and min(first.size) >= 256  # full resolution, cropped where used
    ds = ImageDataset(src, 64, train=False)
    x = torch.stack([ds[(i, 0)]["image"] for i in range(len(src))])
    names, ref = skimage_photos(64)
    assert names[0] == "astronaut" and torch.allclose(x, ref, atol=1 / 255)  # the same resize + centre crop
    tok = ResTok.from_preset("restok-tiny", image_size=64).eval()  # reconstructs like any image batch
    assert tok.decode(tok.encode(x)).shape == (8, 3, 64, 64)


def test_embedded_data_as_image_source_and_dataset() -> None:
    src = open_image_source("embedded:mnist-test")
    assert len(src) == 1000 and src.num_classes == 10 and src.records[0].label == 0
    ds = MNISTDigits("test", 32)
    item = ds[5]
    assert item["image"].shape == (3, 32, 32) and item["image"][:, :2].max() == 0  # 2 px padding
    assert torch.equal(item["image"][0], item["image"][1])  # grey digits as RGB
    with pytest.raises(ValueError, match="unknown embedded"):
        open_image_source("embedded:cifar")


# Held-out digits 0..999 are class-sorted (100 per class): two of each class.
HANDFUL = [c * 100 + i for c in range(10) for i in (3, 57)]
PSNR_32_THRESHOLD = 22.5  # measured 23.30 dB on these 20 digits with the shipped model (2026-12-01)


def test_embedded_tokenizer_reconstructs_held_out_digits() -> None:
    tok = ResTok.from_pretrained("restok-tiny-mnist").eval()
    assert tok.config.image_size == 32 and tok.num_tokens == 32 and tok.codebook_size == 512
    x, _ = MNISTDigits("test").batch(HANDFUL)
    ids = tok.encode(x)
    full = float(psnr(tok.decode(ids), x).mean())
    assert full >= PSNR_32_THRESHOLD, full
    # coarse to fine: more tokens, closer reconstructions (Fig. 5)
    by_k = [float(psnr(tok.decode(ids[:, :k]), x).mean()) for k in tok.prefix_lengths]
    assert by_k == sorted(by_k) and by_k[-1] - by_k[0] > 1.0, by_k


def test_bf16_pixel_decoder_is_close_to_float32() -> None:
    """The opt-in reduced-precision pixel decoder: float32 output, within bf16 rounding of the default."""
    tok = ResTok.from_pretrained("restok-tiny-mnist").eval()
    x, _ = MNISTDigits("test").batch(HANDFUL)
    ids = tok.encode(x)
    ref = tok.decode(ids)
    fast = tok.decode(ids, pixel_dtype=torch.bfloat16)
    assert fast.dtype == torch.float32 and fast.shape == ref.shape
    assert 0.0 <= float(fast.min()) and float(fast.max()) <= 1.0
    assert float(psnr(fast, ref).mean()) > 35.0  # measured: benchmarks/RESULTS.md (bf16 paths)
    # an outer autocast does not change the default: the pixel decoder stays float32, as officially
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = tok.decode(ids)
    assert float(psnr(under, ref).mean()) > float(psnr(fast, ref).mean())
    with pytest.raises(ValueError, match="pixel_dtype"):
        tok.decode(ids, pixel_dtype=torch.int8)


def test_embedded_generator_loads_and_samples_every_class() -> None:
    gen = HARGenerator.from_pretrained("har-tiny-mnist").eval()
    tok = ResTok.from_pretrained("restok-tiny-mnist").eval()
    assert gen.config.num_classes == 10 and gen.config.vocab_size == tok.codebook_size and gen.num_steps == 7
    ids = gen.generate(torch.arange(10), cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
    again = gen.generate(torch.arange(10), cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, again)  # seeded sampling is deterministic on CPU
    images = tok.decode(ids)
    assert images.shape == (10, 3, 32, 32) and images.std() > 0.1
    assert len({tuple(r.tolist()) for r in ids}) == 10  # ten different digits


def test_embedded_model_cards_and_missing_assets(monkeypatch, tmp_path) -> None:
    from restok.hub import resolve
    from restok.hub.files import CheckpointError

    for name in resolve.EMBEDDED_MODELS:
        card = resolve.embedded_model_card(name)
        assert card is not None and card["command"].startswith("restok ") and card["figures"], name
    monkeypatch.setattr(resolve, "embedded_model_dir", lambda name: tmp_path / name)
    with pytest.raises(CheckpointError, match="missing from this installation"):
        ResTok.from_pretrained("restok-tiny-mnist")


@pytest.mark.slow
def test_demo_on_embedded_models(tmp_path) -> None:
    """The README's main command, shortened: outputs exist and are non-trivial."""
    from PIL import Image

    from restok.apps.demo import run_demo

    f = run_demo(tmp_path / "demo", num_eval=100, per_class=3, progress=False)
    assert f["psnr_db_by_tokens"][32] >= PSNR_32_THRESHOLD - 1.0
    strip = np.asarray(Image.open(tmp_path / "demo" / "reconstructions.png").convert("L"), dtype=np.float64)
    cell = 34  # 32 px + 2 px padding
    originals = strip[2 : 2 + cell, :].ravel()
    full = strip[2 + 4 * cell : 2 + 5 * cell, :].ravel()  # the 32-token row
    assert np.corrcoef(originals, full)[0, 1] > 0.8  # reconstructions follow their inputs
    samples = np.asarray(Image.open(tmp_path / "demo" / "samples.png"), dtype=np.float32)
    assert samples.std() > 20
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "restok-tiny-mnist" in report and "gFID" in report and "class accuracy" in report


@pytest.fixture
def demo_models(tmp_path):
    """Seeded tiny models with the demo's shapes (32 px, 32 tokens, 10 classes), saved in our format."""
    torch.manual_seed(0)
    ResTok.from_preset("restok-tiny").save_pretrained(str(tmp_path / "tok"))
    gen = HARGenerator.from_preset("har-tiny", num_classes=10)
    torch.nn.init.normal_(gen.output.weight, std=0.5)  # informative logits, so samples vary
    gen.save_pretrained(str(tmp_path / "gen"))
    return str(tmp_path / "tok"), str(tmp_path / "gen")


def test_demo_quick(tmp_path, demo_models) -> None:
    from restok.apps.demo import run_demo

    tok_dir, gen_dir = demo_models
    f = run_demo(tmp_path / "demo", tokenizer=tok_dir, generator=gen_dir, num_eval=40, per_class=2, progress=False)
    for name in ("reconstructions.png", "samples.png", "progressive.png", "report.md", "report.html", "figures.json"):
        assert (tmp_path / "demo" / name).stat().st_size > 100, name
    ks = sorted(int(k) for k in f["psnr_db_by_tokens"])
    assert ks == [4, 8, 16, 32]
    # the PSNR table is computed: it matches a direct computation for one prefix length
    x, _ = MNISTDigits("test").batch(torch.linspace(0, 999, 40).long().tolist())
    tok = ResTok.from_pretrained(tok_dir).eval()
    assert f["psnr_db_by_tokens"][8] == pytest.approx(float(psnr(tok.decode(tok.encode(x)[:, :8]), x).mean()), rel=1e-5)
    assert json.loads((tmp_path / "demo" / "figures.json").read_text())["held_out_digits"] == 40
    from PIL import Image

    samples = np.asarray(Image.open(tmp_path / "demo" / "samples.png"), dtype=np.float32)
    assert samples.std() > 5  # generated images are not constant
    strip = Image.open(tmp_path / "demo" / "reconstructions.png")
    assert strip.size == (10 * 34 + 2, 5 * 34 + 2)  # 10 digits x (originals + 4 prefix lengths), 2 px padding
    assert (
        "PSNR" in (tmp_path / "demo" / "report.md").read_text()
        and "<img" in (tmp_path / "demo" / "report.html").read_text()
    )


def _digit_classifier():  # type: ignore[no-untyped-def]
    """benchmarks/replication's digit classifier (a small CNN, 96.4 % on the held-out digits), loaded by path."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "replication" / "digit_classifier.py"
    spec = importlib.util.spec_from_file_location("digit_classifier", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@torch.no_grad()
@pytest.mark.slow
def test_shipped_cards_hold_what_the_shipped_models_measure() -> None:
    """The embedded cards' figures, re-measured from the shipped weights on the 1,000 held-out digits: PSNR and the
    digit classifier's verdict at every prefix length, codebook usage/entropy, and the generator's class accuracy
    under the evaluation protocol's sampling (class i mod 10, one seeded generator per chunk of 100, guidance 2.0)."""
    from restok.data import derive_seed
    from restok.eval import generation_labels
    from restok.eval.metrics import codebook_stats, psnr
    from restok.hub import embedded_model_card

    dc = _digit_classifier()
    net = dc.load_classifier()
    tok = ResTok.from_pretrained("restok-tiny-mnist").eval()
    card = embedded_model_card("restok-tiny-mnist")["figures"]
    x, y = MNISTDigits("test").batch(range(1000))
    ids = torch.cat([tok.encode(b) for b in x.split(100)])
    for k in tok.prefix_lengths:
        rec = torch.cat([tok.decode(b[:, :k]) for b in ids.split(100)])
        assert abs(float(psnr(rec, x).mean()) - card[f"held-out PSNR (dB, {k} tokens)"]) < 1e-3, k
        assert (
            abs(dc.accuracy(net, rec, y) - card[f"reconstructions classified as the original digit ({k} tokens)"])
            < 1e-6
        ), k
    stats = codebook_stats(ids, tok.codebook_size)
    assert stats["usage"] == card["codebook usage"] and abs(stats["entropy"] - card["codebook entropy (bits)"]) < 1e-6
    # the targets: 95 % of 32-token reconstructions kept, >= 0.5 dB per level, >= half the codes used
    assert card["reconstructions classified as the original digit (32 tokens)"] >= 0.95
    gains = [
        card[f"held-out PSNR (dB, {b} tokens)"] - card[f"held-out PSNR (dB, {a} tokens)"]
        for a, b in ((4, 8), (8, 16), (16, 32))
    ]
    assert min(gains) >= 0.5 and stats["usage"] >= 0.5, gains
    gen = HARGenerator.from_pretrained("har-tiny-mnist").eval()
    gcard = embedded_model_card("har-tiny-mnist")["figures"]
    labels = generation_labels(1000, 10)
    hits = 0
    for c in range(10):
        lab = labels[c * 100 : (c + 1) * 100]
        g = torch.Generator().manual_seed(derive_seed(0, "chunk", c) % (2**63))
        images = tok.decode(gen.generate(lab, cfg_scale=2.0, generator=g))
        u8 = (images * 255).clamp(0, 255).to(torch.uint8)  # what the evaluation scored
        hits += int((net(u8.float() / 255).argmax(1) == lab).sum())
    assert abs(hits / 1000 - gcard["class accuracy (digit classifier)"]) < 1e-6 and hits >= 950


@torch.no_grad()
def test_the_demo_strip_keeps_its_ten_digits() -> None:
    """The demo's coarse-to-fine strip (one held-out digit per class): from 8 tokens on, the classifier reads every one
    of the ten reconstructions as its own digit. The width-96 tokenizers before this one closed the thin, open-looped
    '3' (#333) into an '8' at 32 tokens (the 2026-11-28 model also turned the '6' into a '5')."""
    dc = _digit_classifier()
    tok = ResTok.from_pretrained("restok-tiny-mnist").eval()
    test = MNISTDigits("test", tok.config.image_size)
    idx = (
        torch.linspace(0, len(test) - 1, 1000).long()[torch.linspace(0, 999, 10).long()].tolist()
    )  # the demo's columns
    x, y = test.batch(idx)
    assert y.tolist() == list(range(10))
    ids, net = tok.encode(x), dc.load_classifier()
    for k in (8, 16, 32):
        pred = net(tok.decode(ids[:, :k])).argmax(1)
        assert pred.tolist() == y.tolist(), (k, pred.tolist())
