"""What nested tokens make possible: per-image token budgets (exact minimum against brute force), generation that
stops at a length, and coarse-kept variations that continue the HAR steps from a kept prefix."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from restok import HARGenerator, ResTok, SamplingConfig, encode_adaptive
from restok.data.embedded import MNISTDigits
from restok.data.images import to_pil
from restok.eval.metrics import psnr, ssim
from restok.runtime.processes import Processes

from ..helpers import run_cli

QUIET = Processes(progress=False)


@pytest.fixture(scope="module")
def models():
    return ResTok.from_pretrained("restok-tiny-mnist"), HARGenerator.from_pretrained("har-tiny-mnist")


@pytest.mark.parametrize("metric, target", [("psnr", 17.0), ("psnr", 19.5), ("ssim", 0.75)])
def test_adaptive_budget_is_the_minimum_by_brute_force(models, metric, target) -> None:
    tok, _ = models
    x, _ = MNISTDigits("test", 32).batch(range(7, 1000, 37))  # 27 held-out digits, every class
    res = encode_adaptive(tok, x, **{metric: target}, max_tokens=16 if target == 19.5 else None)
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
        encode_adaptive(tok, x, psnr=10.0, ssim=0.5)
    with pytest.raises(ValueError, match="lpips_net"):
        encode_adaptive(tok, x, lpips=0.1)


def test_generation_stops_at_a_length_in_fewer_calls(models) -> None:
    _, gen = models
    full = gen.generate([1, 5, 9], generator=torch.Generator().manual_seed(2))
    calls: list[int] = []
    part = gen.generate(
        [1, 5, 9], generator=torch.Generator().manual_seed(2), num_tokens=8, callback=lambda s, t, e: calls.append(e)
    )
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
    assert torch.equal(
        gen.generate([4, 2], generator=seed(), prefix=ids[:, :0].expand(2, 0)), gen.generate([4, 2], generator=seed())
    )
    with pytest.raises(ValueError, match="step boundary"):
        gen.generate([4], prefix=ids[:, :6])
    # guided sampling keeps the prefix in both halves of the batch
    g = gen.generate([4] * 2, SamplingConfig(cfg_scale=2.0), prefix=ids[:, :8], generator=seed())
    assert torch.equal(g[:, :8], ids[:, :8].expand(2, 8))


def test_vary_command(tmp_path) -> None:
    img = tmp_path / "four.png"
    to_pil(MNISTDigits("test", 32)[420]["image"]).save(img)
    r = run_cli(
        "vary",
        str(img),
        "--generator",
        "har-tiny-mnist",
        "--tokenizer",
        "restok-tiny-mnist",
        "--keep",
        "8",
        "--classes",
        "4",
        "--num",
        "4",
        "--out",
        str(tmp_path / "v"),
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "v").glob("four_keep8_0*.png")) == [
        f"four_keep8_{i:02d}.png" for i in range(4)
    ]
    rec = json.loads((tmp_path / "v" / "four_keep8.json").read_text())
    tok = ResTok.from_pretrained("restok-tiny-mnist")
    from restok.data.images import load_image

    assert rec["kept_ids"] == tok.encode(load_image(img, 32)[None])[0, :8].tolist()
    r = run_cli(
        "vary",
        str(img),
        "--generator",
        "har-tiny-mnist",
        "--tokenizer",
        "restok-tiny-mnist",
        "--keep",
        "6",
        "--classes",
        "4",
        "--out",
        str(tmp_path / "bad"),
    )
    assert r.returncode == 2 and "--keep 6 is not a step boundary" in r.stderr


def test_rate_curve_in_one_pass_equals_separate_evaluations(tmp_path, inception_torchscript, models) -> None:
    from restok.data import ImageDataset, open_image_source
    from restok.eval import evaluate_reconstruction
    from restok.eval.inception import load_inception

    tok, _ = models
    inc = load_inception(inception_torchscript)
    src = open_image_source("embedded:mnist-test")
    kw = dict(num_images=16, batch_size=8, processes=QUIET, allow_partial=False)
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
    for b in range(0, 16, 8):
        chosen += encode_adaptive(
            tok, torch.stack([ds.load(i, 0) for i in range(b, b + 8)]), psnr=17.0
        ).lengths.tolist()
    budget = curve["budget"]
    assert budget["lengths"] == {k: chosen.count(k) for k in (4, 8, 16, 32)} and budget["mean_tokens"] == pytest.approx(
        sum(chosen) / 16
    )


def test_ragged_files_round_trip_through_every_command(tmp_path, models) -> None:
    """tokenize --target-psnr -> detokenize per image; extract-codes --target-psnr -> check-codes -> generator
    training."""
    import numpy as np

    from restok.data import open_image_source
    from restok.data.images import load_image
    from restok.train import load_train_config, train_generator
    from restok.train.codes import CodesDataset, check_codes, extract_codes

    tok, _ = models
    test = MNISTDigits("test", 32)
    files = []
    (tmp_path / "digits").mkdir()
    for i in (3, 250, 420, 777, 999):
        p = tmp_path / "digits" / f"d{i}.png"
        to_pil(test[i]["image"]).save(p)
        files.append(str(p))
    run = run_cli
    r = run(
        "tokenize", *files, "--tokenizer", "restok-tiny-mnist", "--target-psnr", "17", "--out", str(tmp_path / "r.npz")
    )
    assert r.returncode == 0 and "tokens per image on average" in r.stdout, r.stderr
    d = np.load(tmp_path / "r.npz")
    x = torch.stack([load_image(f, 32) for f in files])
    want = encode_adaptive(tok, x, psnr=17.0)
    assert d["lengths"].tolist() == want.lengths.tolist() and str(d["target"]) == "psnr>=17.0"
    for b, n in enumerate(d["lengths"]):
        assert d["ids"][b, :n].tolist() == want.ids_of(b).tolist() and (d["ids"][b, n:] == -1).all()
    r = run("detokenize", str(tmp_path / "r.npz"), "--out", str(tmp_path / "dec"))
    assert r.returncode == 0, r.stderr
    for b, f in enumerate(files):  # each image decoded from its own length
        got = np.asarray(Image.open(tmp_path / "dec" / f"{os.path.basename(f)[:-4]}.png"), dtype=np.int16)
        ref = np.asarray(to_pil(tok.decode(want.ids_of(b)[None])[0]), dtype=np.int16)
        assert np.abs(got - ref).max() <= 1
    r = run("detokenize", str(tmp_path / "r.npz"), "--out", str(tmp_path / "dec32"), "--tokens", "32")
    if int(d["lengths"].min()) < 32:
        assert r.returncode == 2 and "keep fewer than 32 tokens" in r.stderr
    # a ragged code set: lengths per crop, checked, and trained on with the loss masked past each length
    src = open_image_source(str(tmp_path / "digits"))
    assert len(src) == 5 and src.num_classes == 0
    meta = extract_codes(
        tok, src, tmp_path / "codes", crop="center", batch_size=5, shard_size=3, processes=QUIET, target_psnr=17.0
    )
    assert meta["ragged"] and meta["target_psnr"] == 17.0
    report = check_codes(tmp_path / "codes", tok, src, num_verify=2)
    assert report["num_samples"] == 5
    ds = CodesDataset(tmp_path / "codes")
    lens = {ds[(i, s)]["length"] for i in range(5) for s in range(4)}
    assert lens <= {4, 8, 16, 32} and len(lens) >= 1
    cfg = load_train_config(
        "har-tiny",
        "generator",
        [
            "batch_size=4",
            "log_every=1",
            "save_every=100",
            "image_every=100",
            "trackers=[]",
            "model_overrides={num_classes: 1}",
        ],
    )
    res = train_generator(cfg, str(tmp_path / "codes"), tmp_path / "gen", max_steps=2, progress=False)
    assert res.status == "finished"
    rec = [json.loads(line) for line in (tmp_path / "gen" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rec)
