"""What nested tokens make possible: per-image token budgets (exact minimum against brute force), generation that
stops at a length, and coarse-kept variations that continue the HAR steps from a kept prefix."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from restok import HARGenerator, ResTok, SamplingConfig
from restok.datasets import MNISTDigits
from restok.images import to_pil
from restok.metrics import psnr, ssim


@pytest.fixture(scope="module")
def models():
    return ResTok.from_pretrained("restok-tiny-mnist"), HARGenerator.from_pretrained("har-tiny-mnist")


@pytest.mark.parametrize("metric, target", [("psnr", 17.0), ("psnr", 19.5), ("ssim", 0.75)])
def test_adaptive_budget_is_the_minimum_by_brute_force(models, metric, target) -> None:
    tok, _ = models
    x, _ = MNISTDigits("test", 32).batch(range(7, 1000, 37))  # 27 held-out digits, every class
    res = tok.encode_adaptive(x, **{metric: target}, max_tokens=16 if target == 19.5 else None)
    fn = psnr if metric == "psnr" else ssim
    cap = 16 if target == 19.5 else 32
    # brute force: every prefix of every image decoded and scored (in the same batch, so the float32 decode and its
    # 8-bit rounding are the same), then the shortest that meets the target picked per image
    ids = tok.encode(x)
    every = {k: fn(torch.round(tok.decode(ids[:, :k]) * 255) / 255, x) for k in tok.prefix_lengths if k <= cap}
    for b in range(len(x)):
        scores = {k: float(v[b]) for k, v in every.items()}
        good = [k for k, v in scores.items() if v >= target]
        want = min(good) if good else cap
        assert int(res.lengths[b]) == want, (b, scores, int(res.lengths[b]))
        assert bool(res.met[b]) == bool(good) and float(res.quality[b]) == scores[want]
        assert torch.equal(res.ids_of(b), ids[b, :want])
    assert len(set(res.lengths.tolist())) > 1  # the budget really varies from image to image
    with pytest.raises(ValueError, match="exactly one target"):
        tok.encode_adaptive(x, psnr=10.0, ssim=0.5)
    with pytest.raises(ValueError, match="lpips_net"):
        tok.encode_adaptive(x, lpips=0.1)


def test_generation_stops_at_a_length_in_fewer_calls(models) -> None:
    _, gen = models
    full = gen.generate([1, 5, 9], generator=torch.Generator().manual_seed(2))
    calls: list[int] = []
    part = gen.generate([1, 5, 9], generator=torch.Generator().manual_seed(2), num_tokens=8, callback=lambda s, t, e: calls.append(e))
    assert part.shape == (3, 8) and torch.equal(part, full[:, :8]) and calls == [1, 2, 3, 4, 8]
    with pytest.raises(ValueError, match="step boundary"):
        gen.generate([1], num_tokens=6)


def test_coarse_kept_variations(models) -> None:
    tok, gen = models
    x, _ = MNISTDigits("test", 32).batch([420])
    ids = tok.encode(x)  # (1, 32)
    for k in (4, 8, 16):
        out = gen.generate([4] * 6, generator=torch.Generator().manual_seed(k), prefix=ids[:, :k])
        assert torch.equal(out[:, :k], ids[:, :k].expand(6, k))  # the kept tokens are unchanged
        if k <= 8:  # the finer levels vary (with 16 kept, the toy generator is sure of the last level)
            assert len({tuple(r.tolist()) for r in out[:, k:]}) > 1
        # the cache path (one teacher-forced call for the prefix) gives what recomputing everything gives
        again = gen.generate([4] * 6, generator=torch.Generator().manual_seed(k), prefix=ids[:, :k], use_cache=False)
        assert torch.equal(out, again)
    assert torch.equal(gen.generate([4], prefix=ids), ids)  # a full-length prefix returns the image's own tokens
    seed = lambda: torch.Generator().manual_seed(11)  # noqa: E731
    assert torch.equal(gen.generate([4, 2], generator=seed(), prefix=ids[:, :0].expand(2, 0)), gen.generate([4, 2], generator=seed()))
    with pytest.raises(ValueError, match="step boundary"):
        gen.generate([4], prefix=ids[:, :6])
    # guided sampling keeps the prefix in both halves of the batch
    g = gen.generate([4] * 2, SamplingConfig(cfg_scale=2.0), prefix=ids[:, :8], generator=seed())
    assert torch.equal(g[:, :8], ids[:, :8].expand(2, 8))


def test_vary_command(tmp_path) -> None:
    img = tmp_path / "four.png"
    to_pil(MNISTDigits("test", 32)[420]["image"]).save(img)
    r = subprocess.run([sys.executable, "-m", "restok", "vary", str(img), "--generator", "har-tiny-mnist", "--tokenizer", "restok-tiny-mnist",
                        "--keep", "8", "--classes", "4", "--num", "4", "--out", str(tmp_path / "v")],
                       capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "v").glob("four_keep8_0*.png")) == [f"four_keep8_{i:02d}.png" for i in range(4)]
    rec = json.loads((tmp_path / "v" / "four_keep8.json").read_text())
    tok = ResTok.from_pretrained("restok-tiny-mnist")
    from restok.images import load_image

    assert rec["kept_ids"] == tok.encode(load_image(img, 32)[None])[0, :8].tolist()
    r = subprocess.run([sys.executable, "-m", "restok", "vary", str(img), "--generator", "har-tiny-mnist", "--tokenizer", "restok-tiny-mnist",
                        "--keep", "6", "--classes", "4", "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert r.returncode == 2 and "--keep 6 is not a step boundary" in r.stderr


def test_rate_curve_in_one_pass_equals_separate_evaluations(tmp_path, inception_torchscript, models) -> None:
    from restok.data import ImageDataset, open_image_source
    from restok.evaluation import evaluate_reconstruction
    from restok.inception import load_inception

    tok, _ = models
    inc = load_inception(inception_torchscript)
    src = open_image_source("embedded:mnist-test")
    kw = dict(num_images=24, batch_size=8, progress=False, allow_partial=False)
    curve = evaluate_reconstruction(tok, src, inc, tmp_path / "curve.json", tokens="all", target_psnr=17.0, **kw)
    assert [r["tokens"] for r in curve["rate_curve"]] == [4, 8, 16, 32] and (tmp_path / "curve.png").is_file()
    for row in curve["rate_curve"]:
        one = evaluate_reconstruction(tok, src, inc, tmp_path / f"k{row['tokens']}.json", tokens=row["tokens"], **kw)
        for key in ("rfid", "psnr", "ssim", "codebook_usage", "codebook_entropy"):
            assert row[key] == one[key], (row["tokens"], key)
    assert curve["psnr"] == curve["rate_curve"][-1]["psnr"]
    # the budget distribution is what encode_adaptive chooses on the same batches
    ds = ImageDataset(src, 32, train=False)
    chosen = []
    for b in range(0, 24, 8):
        chosen += tok.encode_adaptive(torch.stack([ds.load(i, 0) for i in range(b, b + 8)]), psnr=17.0).lengths.tolist()
    budget = curve["budget"]
    assert budget["lengths"] == {k: chosen.count(k) for k in (4, 8, 16, 32)} and budget["mean_tokens"] == pytest.approx(sum(chosen) / 24)
