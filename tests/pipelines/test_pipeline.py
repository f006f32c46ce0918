"""The library as a timm/diffusers/transformers user meets it: Hub keyword arguments and the Hub cache, dtype and
device, sampling configs stored with a generator, the pipeline from class names to PIL images and token files, and
model cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import restok
from restok import RELEASED_RECIPE, HARGenerator, ResTok, ResTokPipeline, SamplingConfig
from restok.hub import CheckpointError

from ..helpers import run_cli


def _fake_hub_cache(
    root: Path, repo: str, files: dict[str, Path], commit: str = "0123456789abcdef0123456789abcdef01234567"
) -> Path:
    """A Hugging Face cache folder holding ``files`` of ``repo`` at ``commit`` (what `hf download` leaves)."""
    base = root / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        shutil.copy(src, snap / name)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    return root


def test_from_pretrained_takes_the_hub_keywords_and_reads_the_cache(tmp_path, tiny_tok, monkeypatch):
    tiny_tok.save_pretrained(tmp_path / "tok")
    cache = _fake_hub_cache(
        tmp_path / "cache", "me/tiny-tok", {f: tmp_path / "tok" / f for f in ("config.json", "model.safetensors")}
    )
    tok = ResTok.from_pretrained(
        "me/tiny-tok",
        cache_dir=cache,
        local_files_only=True,
        revision="main",
        token=None,
        force_download=False,
        device="cpu",
        torch_dtype=torch.float32,
    )
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tok.encode(x), tiny_tok.encode(x))
    assert (
        tok.provenance.source == "me/tiny-tok"
        and tok.provenance.revision == "main"
        and tok.provenance.layout == "restok"
    )
    assert len(tok.identity()["sha256"]) == 64
    with pytest.raises(CheckpointError, match="hf download me/other"):
        ResTok.from_pretrained("me/other", cache_dir=cache, local_files_only=True)
    # map_location is an alias of device, as torch.load users expect
    assert ResTok.from_pretrained(str(tmp_path / "tok"), map_location="cpu").device == torch.device("cpu")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_tokenizer_end_to_end(tmp_path, tiny_tok, dtype):
    tiny_tok.save_pretrained(tmp_path / "tok")
    for tok in (
        ResTok.from_pretrained(str(tmp_path / "tok"), torch_dtype=dtype),
        ResTok.from_pretrained(str(tmp_path / "tok")).to(dtype),
    ):
        assert tok.dtype == dtype and tok.device == torch.device("cpu")
        # the quantizer and the CNN pixel decoder stay float32, as the official code runs them
        assert (
            tok.pixel_decoder.conv_out.weight.dtype == torch.float32
            and tok.quantize.embedding.weight.dtype == torch.float32
        )
        assert tok.encoder.blocks[0].attn.qkv.weight.dtype == dtype
        x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        for images in (x, x.to(dtype), x.double()):  # any float dtype goes in
            ids = tok.encode(images)
            assert ids.shape == (2, 32) and ids.dtype == torch.int64
        out = tok.decode(ids[:, :8])
        assert out.dtype == torch.float32 and 0 <= float(out.min()) and float(out.max()) <= 1
        assert torch.isfinite(tok.decode(ids, pixel_dtype=dtype)).all()
    # most tokens survive bf16 (a few near-ties flip)
    if dtype == torch.bfloat16:
        agree = (tok.encode(x) == tiny_tok.encode(x)).float().mean()
        assert agree > 0.5


def test_generation_config_is_stored_and_used_by_default(tmp_path, tiny_gen):
    recipe = SamplingConfig(cfg_scale=1.7, cfg_schedule="linear", top_k=20)
    tiny_gen.generation_config = recipe
    tiny_gen.save_pretrained(tmp_path / "gen")
    saved = json.loads((tmp_path / "gen" / "generation_config.json").read_text())
    assert saved == recipe.to_dict()
    gen = HARGenerator.from_pretrained(str(tmp_path / "gen"))
    assert gen.generation_config == recipe
    seed = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    assert torch.equal(gen.generate([1, 2], generator=seed()), gen.generate([1, 2], recipe, generator=seed()))
    # keywords change one setting of the stored recipe
    assert torch.equal(
        gen.generate([1, 2], top_k=5, generator=seed()), gen.generate([1, 2], recipe.replace(top_k=5), generator=seed())
    )
    assert RELEASED_RECIPE.to_dict() == {
        "cfg_scale": 3.75,
        "cfg_schedule": "step",
        "cfg_start": 0.25,
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 0.95,
    }
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="unknown sampling setting"):
        SamplingConfig.from_dict({"guidance": 2})
    assert HARGenerator.from_pretrained("har-tiny-mnist").generation_config.cfg_scale == 2.0


def test_pipeline_from_class_names_to_pil_images(tmp_path):
    torch.manual_seed(0)
    tok = ResTok.from_preset("restok-tiny").eval()
    gen = HARGenerator.from_preset("har-tiny", num_classes=1000).eval()
    torch.nn.init.normal_(gen.output.weight, std=0.3)
    pipe = ResTokPipeline(tok, gen)
    images = pipe(["golden retriever", 360], num_images_per_class=2, seed=3)
    assert len(images) == 4 and all(isinstance(im, Image.Image) and im.size == (32, 32) for im in images)
    ids = pipe.generate_ids([207, "otter"], 2, seed=3)
    assert torch.equal(
        ids, gen.generate(torch.tensor([207, 207, 360, 360]), generator=torch.Generator().manual_seed(3))
    )
    with pytest.raises(ValueError, match="did you mean 'golden retriever'"):
        pipe(["golden retreiver"])
    # reconstruct takes PIL images, paths and tensors alike
    images[0].save(tmp_path / "a.png")
    as_pil = pipe.reconstruct(images[0], tokens=8)
    as_path = pipe.reconstruct(tmp_path / "a.png", tokens=8)
    from restok.data.images import pil_to_tensor

    as_tensor = pipe.reconstruct(pil_to_tensor(images[0]), tokens=8)
    assert (
        [list(im.getdata()) for im in as_pil]
        == [list(im.getdata()) for im in as_path]
        == [list(im.getdata()) for im in as_tensor]
    )
    strip = pipe.reconstruct(images[:2], tokens="all")
    assert list(strip) == [4, 8, 16, 32] and len(strip[4]) == 2


def test_embedded_pipeline_in_three_lines():
    pipe = ResTokPipeline.from_pretrained("restok-tiny-mnist", "har-tiny-mnist")
    digits = pipe([3, 7], seed=0)
    assert len(digits) == 2 and digits[0].size == (32, 32)


def test_cli_generate_takes_class_names(tmp_path):
    torch.manual_seed(0)
    ResTok.from_preset("restok-tiny").save_pretrained(tmp_path / "tok")
    HARGenerator.from_preset("har-tiny", num_classes=1000).save_pretrained(tmp_path / "gen")
    base = ["generate", "--generator", str(tmp_path / "gen"), "--tokenizer", str(tmp_path / "tok")]
    r = run_cli(*base, "--classes", "golden retriever", "360", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("0*.png")) == ["000000_class207.png", "000001_class360.png"]
    r = run_cli(*base, "--classes", "golden retreiver", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "did you mean 'golden retriever'" in r.stderr and "Traceback" not in r.stderr


def test_submodules_are_reachable_as_the_readme_writes_them():
    """The sub-packages answer as attributes of the package (imported on first use); the old module paths do too, with
    a DeprecationWarning (tests/test_compat.py)."""
    assert restok.eval.metrics.frechet_distance is not None and restok.eval.PROTOCOL_VERSION
    assert restok.core.hierarchy.latent_level_sizes(8) == (1, 1, 2, 4)
    with pytest.raises(AttributeError):
        restok.no_such_module  # noqa: B018


def test_python_api_mistakes_get_messages_that_name_the_argument() -> None:
    """The API's boundary: every number checked as the command line checks it, each mistake named in the message."""
    from restok import encode_adaptive

    pipe = ResTokPipeline.from_pretrained("restok-tiny-mnist", "har-tiny-mnist")
    tok, gen = pipe.tokenizer, pipe.generator
    x = torch.rand(2, 3, tok.config.image_size, tok.config.image_size)
    ids = tok.encode(x)
    assert tok.decode(ids[:0]).shape == (
        0,
        3,
        tok.config.image_size,
        tok.config.image_size,
    )  # an empty batch decodes to one
    assert torch.equal(
        gen.generate([1], {"cfg_scale": 2.0}, generator=torch.Generator().manual_seed(0)),
        gen.generate([1], cfg_scale=2.0, generator=torch.Generator().manual_seed(0)),
    )  # a recipe as a dict
    cases = [
        (lambda: gen.generate(["three"]), "integer class ids, got 'three'"),
        (lambda: gen.generate([10**30]), "unknown class id"),
        (lambda: gen.generate([]), "no class labels given"),
        (lambda: gen.generate([1], 3.5), "sampling must be a SamplingConfig"),
        (lambda: gen.generate([1], temperature=float("inf")), r"temperature must be in \[0.0001, 100\], got inf"),
        (lambda: gen.generate([1], cfg_scale=float("nan")), "cfg_scale must be"),
        (lambda: pipe([]), "no classes given"),
        (lambda: pipe([1], seed=2**70), r"seed must be in \[0, 9223372036854775807\]"),
        (lambda: pipe([1], seed=-1), "seed must be in"),
        (lambda: pipe([1], batch_size=0), "batch_size must be an integer >= 1"),
        (lambda: pipe.vary(x[0], 4, 1, num=0), "num must be an integer >= 1"),
        (lambda: encode_adaptive(tok, x, psnr=float("nan")), r"psnr target must be in \(0, 200\], got nan"),
        (lambda: encode_adaptive(tok, x, psnr=float("inf")), "psnr target must be in"),
        (lambda: encode_adaptive(tok, x, ssim=2.0), r"ssim target must be in \(0, 1\]"),
        (lambda: encode_adaptive(tok, x, psnr=20.0, max_tokens=5), "max_tokens=5 is not a prefix length"),
        (lambda: SamplingConfig(top_p=float("nan")), "top_p must be in"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_overflowing_weights_are_an_error_not_black_images(tiny_tok) -> None:
    ids = tiny_tok.encode(torch.rand(1, 3, 32, 32))
    with torch.no_grad():
        for name, p in tiny_tok.named_parameters():
            if name.startswith("decoder"):
                p.mul_(1e38)
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiny_tok.decode(ids)


def test_nan_logits_are_named_not_torch_s_message() -> None:
    from restok.sampling.logits import sample_from_logits

    with pytest.raises(ValueError, match="next-token probabilities are NaN or infinite"):
        sample_from_logits(torch.full((2, 8), float("nan")), generator=torch.Generator().manual_seed(0))
