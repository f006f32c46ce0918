"""Metrics with known answers; the Inception loading path with a TorchScript network the test makes;
a tiny end-to-end rFID/gFID evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restok import HARGenerator, ResTok, SamplingConfig
from restok.eval import EvaluationError, evaluate_generation, evaluate_reconstruction, load_reference, make_reference
from restok.eval.inception import InceptionError, load_inception, resize_bilinear_tf1
from restok.eval.metrics import (
    codebook_stats,
    feature_statistics,
    frechet_distance,
    inception_score,
    precision_recall,
    psnr,
    ssim,
)
from restok.runtime.processes import Processes

QUIET = Processes(progress=False)


def test_codebook_stats_hand_counts() -> None:
    uniform = torch.arange(8192).repeat(3)
    s = codebook_stats(uniform, 8192)
    # 13 bits; the eps of Eq. 6 inside the log takes 1.2e-4 off it
    assert s["usage"] == 1.0 and s["entropy"] == pytest.approx(-np.log2(1 / 8192 + 1e-8), abs=1e-9)
    assert s["entropy"] == pytest.approx(13.0, abs=2e-4)
    s = codebook_stats(np.array([0, 0, 1, 1]), 8)  # two codes, p = 1/2 each -> 1 bit, usage 2/8
    assert s["usage"] == 0.25 and s["entropy"] == pytest.approx(1.0, abs=1e-7)
    s = codebook_stats(torch.tensor([[5, 5, 5, 5]]), 16)
    # one code: Eq. 6 gives -log2(1 + 1e-8) = -1.4e-8 bits (the eps, not an entropy); entropies are clamped at 0
    assert s["entropy"] == 0.0 and s["usage"] == 1 / 16
    with pytest.raises(ValueError, match="indices must be in"):
        codebook_stats(torch.tensor([0, 9]), 8)


def test_fid_self_is_zero_and_matches_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    mu, sig = feature_statistics(a)
    assert abs(frechet_distance(mu, sig, mu, sig)) < 1e-8
    # two Gaussians with diagonal covariances: closed form sum (m1-m2)^2 + (s1 - s2)^2 per dimension
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    expect = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expect, abs=1e-8)
    # full covariances, against SciPy's sqrtm computed independently
    from scipy import linalg

    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.3
    mu2, sig2 = feature_statistics(b)
    ref = ((mu - mu2) ** 2).sum() + np.trace(sig + sig2 - 2 * linalg.sqrtm(sig @ sig2).real)
    assert frechet_distance(mu, sig, mu2, sig2) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(mu, sig, mu2, sig2, method="sqrtm") == pytest.approx(ref, rel=1e-12)
    # rank-deficient covariances (fewer samples than dimensions, as in small evaluations) agree too
    c, d = rng.normal(size=(20, 64)), rng.normal(size=(25, 64)) * 1.5
    (m1, c1), (m2, c2) = feature_statistics(c), feature_statistics(d)
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(frechet_distance(m1, c1, m2, c2, method="sqrtm"), rel=1e-6)
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(mu, sig, mu[:3], sig)


def test_precision_recall_hand_made_clouds() -> None:
    real = np.array([[0.0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]])
    # k = 3 radii of the real points: corners 1.0 (3rd neighbour), centre 0.7071
    inside = np.array([[0.5, 0.4], [0.2, 0.2], [0.9, 0.9], [0.1, 0.8]])
    far = np.array([[10.0, 10], [11, 10], [10, 11], [11, 11]])
    assert precision_recall(real, inside, k=3)["precision"] == 1.0
    pr = precision_recall(real, np.concatenate([inside, far]), k=3)
    assert pr["precision"] == 0.5
    assert precision_recall(real, far, k=3) == {"precision": 0.0, "recall": 0.0}
    with pytest.raises(ValueError, match="more than k"):
        precision_recall(real[:3], inside, k=3)


def test_inception_score_bounds() -> None:
    uniform = np.zeros((20, 5))
    assert inception_score(uniform, 10)[0] == pytest.approx(1.0)
    confident = np.full((20, 5), -50.0)
    confident[np.arange(20), np.arange(20) % 5] = 50.0
    assert inception_score(confident, 10)[0] == pytest.approx(5.0, rel=1e-6)  # splits of 10 hold every class twice


def test_psnr_and_ssim() -> None:
    x = torch.rand(2, 3, 16, 16)
    y = (x + 0.1).clamp(0, 1)
    mse = ((x - y) ** 2).flatten(1).mean(1).double()
    assert torch.allclose(psnr(x, y), -10 * torch.log10(mse))
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert (ssim(x, torch.rand(2, 3, 16, 16)) < 0.5).all()


def test_tf1_resize_matches_definition() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = resize_bilinear_tf1(x, 2)  # source = dst * 2: picks rows/cols 0 and 2 exactly
    assert torch.equal(y, x[:, :, ::2, ::2])
    up = resize_bilinear_tf1(torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]]), 4)  # src 0, .5, 1, 1.5 (clamped)
    assert torch.allclose(up[0, 0, 0], torch.tensor([0.0, 1.0, 2.0, 2.0]))


@pytest.fixture
def inception_file(inception_torchscript) -> str:
    return inception_torchscript


def test_inception_loads_torchscript_file(inception_file, tmp_path) -> None:
    inc = load_inception(inception_file, dtype="fp32")
    feats, logits = inc((torch.rand(3, 3, 32, 32) * 255).to(torch.uint8))
    assert feats.shape == (3, 64) and feats.dtype == torch.float64 and logits is None
    assert inc.identity()["backend"] == "torchscript" and len(inc.identity()["sha256"]) == 64
    with pytest.raises(InceptionError, match="does not exist"):
        load_inception(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="uint8"):
        inc(torch.rand(1, 3, 32, 32))


def test_end_to_end_reconstruction_and_generation(inception_file, image_folder, tmp_path) -> None:
    from restok.data import ImageDataset, open_image_source

    torch.manual_seed(0)
    tok = ResTok.from_preset("restok-tiny").eval()
    gen = HARGenerator.from_preset("har-tiny", num_classes=2).eval()
    inc = load_inception(inception_file, dtype="fp32")
    src = open_image_source(image_folder)
    r = evaluate_reconstruction(tok, src, inc, tmp_path / "rec.json", tokens=8, batch_size=3, processes=QUIET)
    assert r["num_images"] == 8 and r["rfid"] > 0 and 0 < r["codebook_usage"] <= 1 and r["settings"]["tokens"] == 8
    saved = json.loads((tmp_path / "rec.json").read_text())
    assert saved["rfid"] == r["rfid"] and saved["settings"]["inception"]["backend"] == "torchscript"
    with pytest.raises(EvaluationError, match="refusing"):
        evaluate_reconstruction(tok, src, inc, tmp_path / "rec2.json", num_images=20, processes=QUIET)
    # a reference batch made from the same images
    ds = ImageDataset(src, 32, train=False)
    imgs = np.stack([(ds.load(i, 0) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy() for i in range(8)])
    make_reference(imgs, inc, tmp_path / "ref.npz")
    ref = load_reference(tmp_path / "ref.npz", inc)
    assert ref["activations"].shape == (8, 64)
    sampling = {"cfg_scale": 2.0}
    g = evaluate_generation(
        gen,
        tok,
        inc,
        tmp_path / "ref.npz",
        tmp_path / "gen.json",
        per_class=3,
        batch_size=4,
        seed=1,
        sampling=sampling,
        processes=QUIET,
    )
    assert (
        g["num_samples"] == 6
        and g["gfid"] > 0
        and 0 <= g["precision"] <= 1
        and g["settings"]["sampling"] == {**SamplingConfig().to_dict(), **sampling}
    )
    assert g["settings"]["pixel_decoder_dtype"] == "torch.float32" and g["settings"]["autocast"] is None
    fast = evaluate_generation(
        gen,
        tok,
        inc,
        tmp_path / "ref.npz",
        tmp_path / "gen-bf16.json",
        per_class=3,
        batch_size=4,
        seed=1,
        sampling=sampling,
        processes=QUIET,
        autocast_dtype=torch.bfloat16,
        pixel_dtype=torch.bfloat16,
    )
    assert fast["num_samples"] == 6 and fast["settings"]["pixel_decoder_dtype"] == "torch.bfloat16"
    assert fast["settings"]["autocast"] == "torch.bfloat16"
    # resume: the finished chunks are reused, so the number is the same
    again = evaluate_generation(
        gen,
        tok,
        inc,
        tmp_path / "ref.npz",
        tmp_path / "gen.json",
        per_class=3,
        batch_size=4,
        seed=1,
        sampling=sampling,
        processes=QUIET,
    )
    assert again["gfid"] == g["gfid"]
    # resuming with other settings would mix batches from two configurations: refused, naming what changed
    with pytest.raises(EvaluationError, match="seed"):
        evaluate_generation(
            gen,
            tok,
            inc,
            tmp_path / "ref.npz",
            tmp_path / "gen.json",
            per_class=3,
            batch_size=4,
            seed=2,
            sampling=sampling,
            processes=QUIET,
        )
    with pytest.raises(EvaluationError, match="pixel_decoder_dtype"):
        evaluate_reconstruction(
            tok, src, inc, tmp_path / "rec.json", tokens=8, batch_size=3, processes=QUIET, pixel_dtype=torch.bfloat16
        )
