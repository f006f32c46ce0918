"""The evaluation protocol against independent implementations: torchvision's transform, pytorch-msssim's SSIM,
the lpips package, SciPy's FID path, the ADM evaluator's Inception Score and precision/recall definitions, and
an evaluator written here from the official TiTok/ADM code's description (not from restok's functions)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from restok import HARGenerator, ResTok
from restok.data import ImageDataset, open_image_source
from restok.data.images import center_crop_box, eval_transform, load_image, pil_to_tensor, resized_size
from restok.eval import (
    PROTOCOL_VERSION,
    evaluate_generation,
    evaluate_reconstruction,
    generation_labels,
    make_reference,
)
from restok.eval.inception import InceptionFeatures, _Source
from restok.eval.metrics import frechet_distance, inception_score, precision_recall, ssim
from restok.runtime.processes import Processes

from ..helpers import require

QUIET = Processes(progress=False)

# sizes where truncation and rounding of the long side differ, odd crop margins (round half to even), ties
SIZES = [
    (500, 375),
    (375, 500),
    (333, 500),
    (301, 256),
    (256, 301),
    (257, 256),
    (640, 427),
    (37, 100),
    (100, 37),
    (64, 64),
    (31, 17),
    (17, 31),
    (999, 1000),
    (300, 299),
    (1003, 600),
]


def _photo(w: int, h: int, mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)], -1)
    noise = rng.integers(0, 40, size=(h, w, 3))
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    if mode == "RGBA":
        a = Image.fromarray(rng.integers(0, 256, size=(h, w)).astype(np.uint8))
        img = img.copy()
        img.putalpha(a)
        return img
    return img.convert(mode)


def test_transform_formulas_by_hand() -> None:
    # long side truncated: 256 * 500 / 375 = 341.33 -> 341; 256 * 301 / 256 = 301; 100 * 37 -> 32 * 100 / 37 = 86.49
    # -> 86
    assert resized_size(500, 375, 256) == (341, 256) and resized_size(375, 500, 256) == (256, 341)
    assert resized_size(37, 100, 32) == (32, 86) and resized_size(999, 1000, 256) == (256, 256)  # 256.256 -> 256
    assert resized_size(333, 500, 256) == (256, 384)  # 384.38: rounding and truncation agree here
    assert resized_size(1003, 600, 256) == (427, 256)  # 427.95: rounding would give 428
    # crop offsets round half to even: margins 3 -> 1.5 -> 2, 5 -> 2.5 -> 2, 7 -> 3.5 -> 4
    assert center_crop_box(259, 256, 256) == (2, 0, 258, 256)
    assert center_crop_box(256, 261, 256) == (0, 2, 256, 258)
    assert center_crop_box(263, 256, 256) == (4, 0, 260, 256)
    img = _photo(1003, 600, "RGB", 0)
    out = eval_transform(img, 256)
    expect = img.resize((427, 256), Image.BICUBIC).crop((86, 0, 342, 256))  # margin 171 -> 85.5 -> 86
    assert out.size == (256, 256) and np.array_equal(np.asarray(out), np.asarray(expect))


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK", "P", "RGBA", "LA"])
def test_transform_is_torchvision_bit_for_bit(mode: str) -> None:
    tv = require("torchvision")
    from torchvision import transforms as T

    for size in (256, 32):
        official = T.Compose(
            [
                T.Resize(size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
                T.CenterCrop(size),
                T.ToTensor(),
            ]
        )
        for i, (w, h) in enumerate(SIZES):
            if min(w, h) < 8:
                continue
            img = _photo(w, h, mode, i)
            ours = pil_to_tensor(eval_transform(img, size))
            theirs = official(img.convert("RGB"))  # webdataset's "pil" decoder / ImageFolder's loader convert like this
            assert torch.equal(ours, theirs), (mode, size, w, h)
    assert tv.__name__ == "torchvision"


def test_every_reader_uses_the_one_transform(tmp_path) -> None:
    """reconstruct/tokenize (load_image) and eval/training validation (ImageDataset) give the same pixels."""
    tv = require("torchvision")
    from torchvision import transforms as T

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (w, h) in enumerate(SIZES[:8]):
        img = _photo(w, h, ["RGB", "L", "CMYK", "RGB"][i % 4], i)
        if img.mode == "CMYK":
            img.save(folder / f"{i:02d}.jpg", quality=95)  # a CMYK JPEG, as some ImageNet files are
        else:
            img.save(folder / f"{i:02d}.png")
    official = T.Compose(
        [T.Resize(64, interpolation=T.InterpolationMode.BICUBIC, antialias=True), T.CenterCrop(64), T.ToTensor()]
    )
    ds = ImageDataset(open_image_source(folder), 64, train=False)
    for i, p in enumerate(sorted(folder.iterdir())):
        with Image.open(p) as im:
            expect = official(im.convert("RGB"))
        assert torch.equal(load_image(p, 64), expect), p.name
        assert torch.equal(ds.load(i, 0), expect), p.name
    assert tv is not None


def test_ssim_matches_pytorch_msssim() -> None:
    pm = require("pytorch_msssim")
    g = torch.Generator().manual_seed(0)
    for shape in ((3, 3, 32, 32), (2, 3, 48, 64), (1, 3, 11, 40)):
        x = torch.rand(shape, generator=g)
        y = (x + 0.15 * torch.randn(shape, generator=g)).clamp(0, 1)
        theirs = pm.ssim(y, x, data_range=1.0, size_average=False).double()
        assert torch.allclose(ssim(y, x), theirs, atol=1e-6), (ssim(y, x), theirs)


def test_lpips_matches_the_lpips_package() -> None:
    """restok's LPIPS-VGG (training loss) on the heads the lpips wheel ships, against lpips.LPIPS on the same VGG."""
    lpips = require("lpips")
    from restok.train.backbones import LPIPS, installed_lpips_heads, load_weights

    torch.manual_seed(0)
    theirs = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()  # random VGG, shipped heads
    vgg = {}
    for name, t in theirs.net.state_dict().items():  # net.sliceK.<torchvision index>.weight
        _, idx, kind = name.split(".")
        vgg[f"features.{idx}.{kind}"] = t
    ours = LPIPS().eval()
    ours.net.load_state_dict(vgg)
    heads = installed_lpips_heads()
    assert heads is not None
    holder = torch.nn.Module()
    for i, lin in enumerate(ours.lins):
        holder.add_module(f"lin{i}", lin)
    load_weights(holder, heads, None, "heads")
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expect = theirs(x * 2 - 1, y * 2 - 1).flatten()
        got = ours(x, y)
    assert torch.allclose(got, expect, rtol=1e-5, atol=1e-7), (got, expect)


def _adm_frechet(mu1, s1, mu2, s2, eps=1e-6) -> float:
    """The ADM/TTUR formula as its evaluator writes it."""
    from scipy import linalg

    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + off).dot(s2 + off))
    covmean = covmean.real
    d = mu1 - mu2
    return float(d.dot(d) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_equals_the_scipy_path_of_the_evaluators() -> None:
    rng = np.random.default_rng(1)
    for n1, n2, d in ((400, 300, 16), (30, 40, 64), (64, 64, 64)):
        a, b = rng.normal(size=(n1, d)), rng.normal(size=(n2, d)) * 1.3 + 0.2
        m1, s1, m2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(_adm_frechet(m1, s1, m2, s2), rel=1e-10)
        if n1 > d and n2 > d:
            assert frechet_distance(m1, s1, m2, s2, method="eigh") == pytest.approx(
                _adm_frechet(m1, s1, m2, s2), rel=1e-7
            )


def _adm_inception_score(logits: np.ndarray, split_size: int = 5000) -> float:
    """The ADM evaluator's ``compute_inception_score`` on softmax predictions, in file order."""
    z = logits - logits.max(1, keepdims=True)
    preds = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i : i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


def test_inception_score_is_the_adm_definition_in_sample_order() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(12000, 20)) * 3
    assert inception_score(logits)[0] == pytest.approx(
        _adm_inception_score(logits), rel=1e-10
    )  # splits 5000, 5000, 2000
    small = logits[:1234]
    assert inception_score(small)[0] == pytest.approx(_adm_inception_score(small), rel=1e-10)  # one split below 5,000
    # confident predictions of 200 classes x 50: the official order (i mod C) keeps every class in every split
    C, per = 200, 50
    order = generation_labels(C * per, C).numpy()
    conf = np.full((C * per, C), -30.0)
    conf[np.arange(C * per), order] = 30.0
    assert inception_score(conf, 1000)[0] == pytest.approx(C, rel=1e-3)
    by_class = np.sort(order)  # the old class-by-class layout: each split of 1,000 sees 20 classes only
    conf_sorted = np.full_like(conf, -30.0)
    conf_sorted[np.arange(C * per), by_class] = 30.0
    assert inception_score(conf_sorted, 1000)[0] == pytest.approx(20, rel=1e-3)


def _adm_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """The ADM evaluator's ManifoldEstimator: squared distances, the k-th entry of a partition, ``<=``."""

    def sq(u, v):
        return np.maximum((u * u).sum(1)[:, None] - 2 * u @ v.T + (v * v).sum(1)[None, :], 0.0)

    r_radii = np.partition(sq(real, real), k, axis=1)[:, k]
    f_radii = np.partition(sq(fake, fake), k, axis=1)[:, k]
    d = sq(real, fake)  # (Nr, Nf)
    precision = (d <= r_radii[:, None]).any(0).mean()
    recall = (d <= f_radii[None, :]).any(1).mean()
    return float(precision), float(recall)


def test_precision_recall_is_the_adm_definition() -> None:
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.5, 2.0):
        real = rng.normal(size=(300, 8))
        fake = rng.normal(size=(250, 8)) * 1.2 + shift
        pr = precision_recall(real, fake, k=3)
        p, r = _adm_precision_recall(real, fake, 3)
        assert (pr["precision"], pr["recall"]) == pytest.approx((p, r), abs=1e-12)


# ------------------------------------------------------------------------------------------- end to end
class _LogitInception(torch.nn.Module):
    """A small stand-in for torch-fidelity's Inception: uint8 images -> (pool features, 1008-way logits)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4)
        self.fc = torch.nn.Linear(8 * 16, 64)
        self.head = torch.nn.Linear(64, 1008, bias=False)
        self.double()  # float64 throughout, as torch-fidelity's extractor: results do not depend on the batch split

    def forward(self, u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (u8.double() - 128) / 128
        h = F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4).flatten(1)
        pool = torch.relu(self.fc(h))
        return pool, self.head(pool) * 300


def _inception() -> InceptionFeatures:
    return InceptionFeatures(_LogitInception().eval(), _Source("torch-fidelity", "test stand-in", None), torch.float64)


def _titok_evaluator(reals: torch.Tensor, fakes: torch.Tensor, ids: torch.Tensor, net: torch.nn.Module, K: int) -> dict:
    """The official rFID evaluator's arithmetic (VQGANEvaluator), written from its description."""
    from scipy import linalg

    pm = require("pytorch_msssim")
    n = reals.shape[0]
    with torch.no_grad():
        fr, _ = net((reals * 255).to(torch.uint8))
        ff, logits = net((fakes * 255).to(torch.uint8))
    tot_r, tot_f = fr.sum(0), ff.sum(0)
    sig_r = sum(torch.outer(f, f) for f in fr)
    sig_f = sum(torch.outer(f, f) for f in ff)
    cov = lambda s, t: (s - torch.outer(t, t) / n) / (n - 1)  # noqa: E731
    s_r, s_f = cov(sig_r, tot_r), cov(sig_f, tot_f)
    diff = tot_r / n - tot_f / n
    covmean = linalg.sqrtm(s_r.mm(s_f).numpy()).real
    rfid = float(diff.dot(diff) + torch.trace(s_r) + torch.trace(s_f) - 2 * np.trace(covmean))
    p = F.softmax(logits, -1)
    kl = (p * torch.log(p + 1e-16)).sum(0) - p.sum(0) * torch.log(p.sum(0) / n + 1e-16)
    psnr = (-10 * torch.log10(F.mse_loss(fakes, reals, reduction="none").mean(dim=(1, 2, 3)))).double().mean()
    ssim_v = pm.ssim(fakes, reals, data_range=1.0, size_average=False).double().mean()
    counts = torch.zeros(K, dtype=torch.float64).index_add_(
        0, ids.flatten(), torch.ones(ids.numel(), dtype=torch.float64)
    )
    probs = counts / counts.sum()
    return {
        "rfid": rfid,
        "inception_score": float(torch.exp(kl.sum() / n)),
        "psnr": float(psnr),
        "ssim": float(ssim_v),
        "codebook_usage": len(set(ids.flatten().tolist())) / K,
        "codebook_entropy": float((-torch.log2(probs + 1e-8) * probs).sum()),
    }


def test_reconstruction_numbers_equal_an_independent_official_evaluator(tmp_path) -> None:
    require("torchvision")
    from torchvision import transforms as T

    folder = tmp_path / "val"
    folder.mkdir()
    for i, (w, h) in enumerate(SIZES):
        if min(w, h) >= 32:
            mode = ["RGB", "L", "CMYK"][i % 3]
            _photo(w, h, mode, i).save(folder / f"{i:02d}.{'jpg' if mode == 'CMYK' else 'png'}")
    torch.manual_seed(0)
    tok = ResTok.from_preset("restok-tiny").eval()
    inc = _inception()
    for k in (8, 32):
        # one batch on both sides: a float32 decode differs by batch composition in the last bits, which can move a
        # pixel
        # across an 8-bit rounding boundary
        r = evaluate_reconstruction(
            tok, open_image_source(folder), inc, tmp_path / f"rec{k}.json", tokens=k, batch_size=64, processes=QUIET
        )
        official = T.Compose(
            [T.Resize(32, interpolation=T.InterpolationMode.BICUBIC, antialias=True), T.CenterCrop(32), T.ToTensor()]
        )
        reals = []
        for p in sorted(folder.iterdir()):
            with Image.open(p) as im:
                reals.append(official(im.convert("RGB")))
        x = torch.stack(reals)
        with torch.no_grad():
            ids = tok.encode(x)[:, :k]
            fakes = torch.round(tok.decode(ids).clamp(0, 1) * 255) / 255
        want = _titok_evaluator(x, fakes, ids, inc.net, tok.codebook_size)
        # 13 images in 64 dimensions: the covariances are singular, and sqrtm of their product amplifies the last-bit
        # differences of two ways of summing them (running outer products vs np.cov) to ~1e-5 relative
        assert r["rfid"] == pytest.approx(want["rfid"], rel=1e-4)
        assert r["inception_score"] == pytest.approx(want["inception_score"], rel=1e-9)
        assert r["psnr"] == pytest.approx(want["psnr"], abs=1e-4) and r["ssim"] == pytest.approx(want["ssim"], abs=1e-4)
        assert r["codebook_usage"] == want["codebook_usage"] and r["codebook_entropy"] == pytest.approx(
            want["codebook_entropy"], abs=1e-12
        )
        assert r["settings"]["protocol"] == PROTOCOL_VERSION


def test_generation_order_split_semantics_and_the_adm_sample_file(tmp_path) -> None:
    torch.manual_seed(0)
    tok = ResTok.from_preset("restok-tiny").eval()
    gen = HARGenerator.from_preset("har-tiny", num_classes=3).eval()
    torch.nn.init.normal_(gen.output.weight, std=0.3)
    inc = _inception()
    ref_imgs = (torch.rand(40, 32, 32, 3, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8).numpy()
    make_reference(ref_imgs, inc, tmp_path / "ref.npz")
    kw = dict(per_class=5, batch_size=4, seed=3, sampling={"cfg_scale": 1.5, "top_k": 50})
    one = evaluate_generation(
        gen,
        tok,
        inc,
        tmp_path / "ref.npz",
        tmp_path / "w1.json",
        save_samples=tmp_path / "w1.npz",
        processes=QUIET,
        **kw,
    )
    # two processes: rank 1 writes its chunks, then rank 0 its own and merges; the order is the sample order
    assert (
        evaluate_generation(
            gen,
            tok,
            inc,
            tmp_path / "ref.npz",
            tmp_path / "w2.json",
            save_samples=tmp_path / "w2.npz",
            processes=Processes(1, 2, progress=False),
            **kw,
        )
        is None
    )
    assert not (tmp_path / "w2.npz").exists()  # only rank 0 merges and writes
    two = evaluate_generation(
        gen,
        tok,
        inc,
        tmp_path / "ref.npz",
        tmp_path / "w2.json",
        save_samples=tmp_path / "w2.npz",
        processes=Processes(0, 2, progress=False),
        **kw,
    )
    for key in ("gfid", "precision", "recall", "inception_score"):
        assert one[key] == two[key], key
    a, b = np.load(tmp_path / "w1.npz"), np.load(tmp_path / "w2.npz")
    assert a["arr_0"].dtype == np.uint8 and a["arr_0"].shape == (15, 32, 32, 3)
    assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["labels"], b["labels"])
    assert a["labels"].tolist() == [0, 1, 2] * 5
    # the file holds exactly what was scored: its features give the same gFID / IS / P-R, by the ADM definitions
    feats, logits = inc(torch.from_numpy(a["arr_0"]).permute(0, 3, 1, 2))
    ref = np.load(tmp_path / "ref.npz")
    mu, sig = feats.numpy().mean(0), np.cov(feats.numpy(), rowvar=False)
    assert one["gfid"] == pytest.approx(_adm_frechet(mu, sig, ref["mu"], ref["sigma"]), rel=1e-9)
    assert one["inception_score"] == pytest.approx(_adm_inception_score(logits.numpy()), rel=1e-9)
    assert (one["precision"], one["recall"]) == pytest.approx(
        _adm_precision_recall(ref["activations"], feats.numpy()), abs=1e-12
    )
    s = json.loads((tmp_path / "w1.json").read_text())["settings"]
    assert s["protocol"] == PROTOCOL_VERSION and "i mod num_classes" in s["labels"] and "5000" in s["inception_score"]
    # the file reads as the ADM evaluator reads it: arr_0 streamed from the zip member
    import zipfile

    with zipfile.ZipFile(tmp_path / "w1.npz") as z, z.open("arr_0.npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_2_0 if version == (2, 0) else np.lib.format.read_array_header_1_0
        shape, _, dtype = read_header(f)
        assert shape == (15, 32, 32, 3) and dtype == np.uint8
        assert np.array_equal(np.frombuffer(f.read(), np.uint8).reshape(shape), a["arr_0"])


def test_interrupted_chunk_write_does_not_break_a_rerun(tmp_path) -> None:
    """A temporary file left by a kill during a chunk write is not mistaken for a finished chunk."""
    torch.manual_seed(0)
    tok = ResTok.from_preset("restok-tiny").eval()
    gen = HARGenerator.from_preset("har-tiny", num_classes=2).eval()
    inc = _inception()
    make_reference((np.random.default_rng(0).random((12, 32, 32, 3)) * 255).astype(np.uint8), inc, tmp_path / "ref.npz")
    kw = dict(per_class=3, batch_size=4, seed=0, processes=QUIET)
    first = evaluate_generation(gen, tok, inc, tmp_path / "ref.npz", tmp_path / "g.json", **kw)
    work = tmp_path / "g.json.work"
    (work / "chunk-000001.npz").unlink()
    (work / ".chunk-000001.npz.12345.tmp").write_bytes(b"PK\x03\x04 truncated")
    again = evaluate_generation(gen, tok, inc, tmp_path / "ref.npz", tmp_path / "g.json", **kw)
    assert again["gfid"] == first["gfid"]
