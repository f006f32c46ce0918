"""Every family trains the same way (issue: train and fine-tune every family): ResTok, a single-stage TiTok,
One-D-Piece and LlamaGen's VQGAN through `restok train tokenizer` -- loss falling, per-level codebook usage logged,
stop and resume bit for bit, the trained model loading back and scored by `eval compare`; `--init` from a release
layout starts from its weights; the generator that fits each family's codes trains and samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from restok.core.registry import model_class
from restok.models import load_generator, load_tokenizer
from restok.models.restok.official import tokenizer_config_from_official
from tests.helpers import one_line_error, run_cli, write_image_folder
from tests.hub.test_checkpoint import _official_tokenizer_config

pytest.importorskip("accelerate")
# one worker, so that the module's runs are made once -- inert under pytest 9.2 with pytest-xdist 3.8.0 (xdist marks a
# group by rewriting Item._nodeid, which pytest 9.2 no longer reads): each worker then makes them for its own tests
pytestmark = pytest.mark.xdist_group("families-training")

# recipe -> family: every registered tokenizer family that trains, on its tiny recipe
RECIPES = {
    "restok-tiny": "restok",
    "titok-tiny-single": "titok",
    "one-d-piece-tiny-single": "one-d-piece",
    "llamagen-vq-tiny": "llamagen-vq",
}
QUICK = ["trackers=[]", "batch_size=4", "loss.perceptual_weight=0", "loss.discriminator_weight=0"]
QUICK += ["loss.alignment_weight=0", "image_every=100", "save_every=2", "log_every=1"]


def train(recipe: str, data: Path, out: Path, *extra: str) -> None:
    r = run_cli("train", "tokenizer", "--config", recipe, "--data", data, "--out", out, "--no-progress", *QUICK, *extra)
    assert r.returncode == 0, r.stderr[-2000:]


def losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("fam") / "images", classes=2, per_class=4)


@pytest.fixture(scope="module")
def trained(images: Path, tmp_path_factory) -> dict[str, Path]:
    """Each family trained 4 steps (checkpoints at 2 and 4): the uninterrupted runs."""
    root = tmp_path_factory.mktemp("runs")
    for recipe in RECIPES:
        train(recipe, images, root / recipe, "--max-steps", "4")
    return {recipe: root / recipe for recipe in RECIPES}


def test_every_registered_tokenizer_family_trains() -> None:
    from restok.core.registry import model_classes

    trains = {c.family for c in model_classes("tokenizer") if c.training_hook is not None}
    assert trains == set(RECIPES.values())


# Steps for the loss to fall by a fifth with margin: the pixel-out ViT decoders (TiTok, One-D-Piece) need 50 (last ten
# / first ten = 0.25 at 50, 0.75 at 25); ResTok and LlamaGen's VQGAN are there by 25 (0.48 and 0.46) and cost 5-10x more
# per step.
LOSS_STEPS = {"restok-tiny": 25, "titok-tiny-single": 50, "one-d-piece-tiny-single": 50, "llamagen-vq-tiny": 25}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_the_loss_falls_and_each_level_is_logged(recipe: str, images: Path, tmp_path: Path) -> None:
    steps = LOSS_STEPS[recipe]
    train(recipe, images, tmp_path / "run", "--max-steps", str(steps), f"save_every={steps}", "restart_dead_codes=0")
    loss = losses(tmp_path / "run")
    assert len(loss) == steps and sum(loss[-10:]) < 0.8 * sum(loss[:10]), loss
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    levels = model_class(RECIPES[recipe]).from_preset(recipe).level_bounds()
    assert all(f"codebook_usage_level{i}" in last and f"codebook_entropy_level{i}" in last for i in range(len(levels)))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_stop_and_resume_give_the_uninterrupted_weights(
    recipe: str, images: Path, trained: dict[str, Path], tmp_path: Path
) -> None:
    train(recipe, images, tmp_path / "run", "--max-steps", "4", "--stop-at", "2")
    assert not (tmp_path / "run" / "final").exists()
    train(recipe, images, tmp_path / "run", "--max-steps", "4", "--resume")
    a = load_file(str(trained[recipe] / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(tmp_path / "run") == losses(trained[recipe])


@pytest.mark.slow
def test_trained_tokenizers_load_back_and_go_through_eval_compare(
    trained: dict[str, Path], images: Path, inception_torchscript: str, tmp_path: Path
) -> None:
    for recipe, run in trained.items():
        tok = load_tokenizer(str(run / "final"))
        assert type(tok).family == RECIPES[recipe]
    args = [a for run in trained.values() for a in ("--tokenizer", str(run / "final"))]
    r = run_cli("eval", "compare", *args, "--data", images, "--out", tmp_path / "cmp", "--no-speed", "--no-progress",
                "--inception-weights", inception_torchscript, "--batch-size", "4")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path / "cmp" / "table.json").read_text())["rows"]
    assert {r["family"] for r in rows} == set(RECIPES.values())
    assert all(r["psnr"] > 0 and r["codebook_usage"] > 0 for r in rows)


# ------------------------------------------------------------------------------------------- fine-tuning
def _release_folders(root: Path) -> dict[str, Path]:
    """A saved release-layout folder (or file) of each family, as its own repository ships it."""
    out = {}
    torch.manual_seed(0)
    # ResTok: the official nested config + its weights (official names)
    cfg = _official_tokenizer_config(model_class("restok").from_preset("restok-tiny"))
    official = model_class("restok")(tokenizer_config_from_official(cfg))
    (root / "restok").mkdir()
    (root / "restok" / "config.json").write_text(json.dumps(cfg))
    torch.save(official.state_dict(), root / "restok" / "pytorch_model.bin")
    out["restok-tiny"] = root / "restok"
    # TiTok: a bare weights file (its tokenizer_titok_*.bin downloads; the config is read off the shapes)
    titok = model_class("titok").from_preset("titok-tiny-single", use_l2_norm=False)  # as the shapes say
    torch.save(titok.state_dict(), root / "tokenizer_titok_tiny.bin")
    out["titok-tiny-single"] = root / "tokenizer_titok_tiny.bin"
    # One-D-Piece: its repositories' config.json names its ViTs by size (small is the least: a 50M-parameter model,
    # whose 800 MB checkpoint would cost this test half a minute); its tiny stand-in is saved in restok's format, and
    # the release layout's reading is the family tests' (tests/models/test_families.py)
    model_class("one-d-piece").from_preset("one-d-piece-tiny-single").save_pretrained(root / "one-d-piece")
    out["one-d-piece-tiny-single"] = root / "one-d-piece"
    # LlamaGen's VQGAN: a weights file as its releases ship (vq_ds16_c2i.pt), with the ModelArgs that say its image
    # size beside it (the weights do not fix it)
    (root / "llamagen").mkdir()
    (root / "llamagen" / "config.json").write_text(json.dumps({"image_size": 32}))
    torch.save(model_class("llamagen-vq").from_preset("llamagen-vq-tiny").state_dict(), root / "llamagen" / "vq_c2i.pt")
    out["llamagen-vq-tiny"] = root / "llamagen" / "vq_c2i.pt"
    return out


@pytest.mark.slow
def test_init_from_a_release_layout_starts_from_its_weights(images: Path, tmp_path: Path) -> None:
    releases = _release_folders(tmp_path)
    for recipe, src in releases.items():
        source = load_tokenizer(str(src))
        out = tmp_path / f"init-{recipe}"
        # warm-up: the one step runs at learning rate 0, so the run ends on the weights it started from
        train(recipe, images, out, "--init", str(src), "--max-steps", "1", "optimizer.warmup_steps=5")
        tuned = load_tokenizer(str(out / "final"))
        assert tuned.config == source.config, recipe
        a, b = source.state_dict(), tuned.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), recipe
    # a source of another family is refused in one line, naming both
    r = run_cli("train", "tokenizer", "--config", "titok-tiny-single", "--data", images, "--out", tmp_path / "x",
                "--init", str(releases["llamagen-vq-tiny"]), *QUICK)  # fmt: skip
    one_line_error(r, "LlamaGen VQ", "TiTok")


TWO_STAGE = "model_overrides={two_stage: true, legacy: true, patch_size: 16}"


def test_a_two_stage_titok_without_its_teacher_is_refused_naming_both_ways(images: Path, tmp_path: Path) -> None:
    r = run_cli("train", "tokenizer", "--config", "titok-tiny-single", "--data", images, "--out", tmp_path / "x",
                TWO_STAGE, *QUICK)  # fmt: skip
    one_line_error(r, "two_stage=true", "loss.proxy_teacher", "single-stage")


def _teacher(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A seeded random MaskGIT VQGAN in the layout of maskgit-vqgan-imagenet-f16-256.bin (a plain torch.save of
    encoder.*, quantize.embedding.weight, decoder.*) for the tiny two-stage TiTok."""
    from restok.models.titok import MaskGITTeacher, TiTokConfig

    cfg = TiTokConfig.from_dict({**model_class("titok").presets["titok-tiny-single"].to_dict(), "two_stage": True,
                                 "legacy": True, "patch_size": 16})  # fmt: skip
    torch.manual_seed(7)
    teacher = MaskGITTeacher(cfg.pixel_cnn, cfg.pixel_codebook_size)
    for p in teacher.parameters():
        torch.nn.init.normal_(p, std=0.2)
    path = tmp_path / "maskgit-vqgan.bin"
    torch.save(teacher.state_dict(), path)
    return path, teacher


@pytest.mark.slow
def test_titok_two_stage_training_with_the_maskgit_teacher(images: Path, tmp_path: Path) -> None:
    """Stage 1 (TiTok's): the decoder's code logits learn the teacher's codes (cross-entropy falls), the pixel codebook
    and decoder are the teacher's and stay frozen; stage 2 (--init the stage-1 result): the encoder, latent tokens and
    quantizer stay as stage 1 left them while the decoders learn the pixels."""
    path, teacher = _teacher(tmp_path)
    x = torch.rand(3, 3, 32, 32)
    z = teacher.encoder(x).permute(0, 2, 3, 1)  # the teacher's codes, as MaskGIT's quantizer picks them
    expected = torch.cdist(z.reshape(-1, z.shape[-1]), teacher.quantize.embedding.weight).argmin(-1)
    assert torch.equal(teacher.proxy_codes(x).reshape(-1), expected)
    one = tmp_path / "stage1"
    train("titok-tiny-single", images, one, TWO_STAGE, f"loss.proxy_teacher={path}", "--max-steps", "20",
          "optimizer.lr=1e-3", "optimizer.warmup_steps=0")  # fmt: skip
    rows = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    ce = [r["proxy_ce"] for r in rows]
    assert sum(ce[-5:]) / 5 < 0.8 * sum(ce[:5]) / 5, ce
    model = load_tokenizer(one / "final")
    assert model.config.two_stage
    own, taught = model.state_dict(), teacher.state_dict()
    assert all(torch.equal(own["pixel_decoder." + k[len("decoder.") :]], v) for k, v in taught.items()
               if k.startswith("decoder."))  # fmt: skip
    assert torch.equal(own["pixel_quantize.embedding.weight"], taught["quantize.embedding.weight"])
    two = tmp_path / "stage2"
    train("titok-tiny-single", images, two, "--init", str(one / "final"), "--max-steps", "2")
    tuned = load_tokenizer(two / "final").state_dict()
    frozen = [k for k in own if k.startswith(("encoder.", "quantize.", "latent_tokens"))]
    assert frozen and all(torch.equal(own[k], tuned[k]) for k in frozen)
    assert not torch.equal(own["pixel_decoder.conv_out.weight"], tuned["pixel_decoder.conv_out.weight"])
    assert "mse" in json.loads((two / "metrics.jsonl").read_text().splitlines()[-1])


def test_a_proxy_teacher_for_another_family_is_refused(images: Path, tmp_path: Path) -> None:
    path, _ = _teacher(tmp_path)
    for recipe, words in (("restok-tiny", ("proxy_teacher", "ResTok")), ("titok-tiny-single", ("single-stage",))):
        r = run_cli("train", "tokenizer", "--config", recipe, "--data", images, "--out", tmp_path / recipe,
                    f"loss.proxy_teacher={path}", "--max-steps", "1", *QUICK)  # fmt: skip
        one_line_error(r, *words)


def test_a_teacher_that_does_not_fit_is_named(images: Path, tmp_path: Path) -> None:
    path, teacher = _teacher(tmp_path)
    state = teacher.state_dict()
    state["quantize.embedding.weight"] = state["quantize.embedding.weight"][:, :4]
    torch.save(state, path)
    r = run_cli("train", "tokenizer", "--config", "titok-tiny-single", "--data", images, "--out", tmp_path / "x",
                TWO_STAGE, f"loss.proxy_teacher={path}", "--max-steps", "1", *QUICK)  # fmt: skip
    one_line_error(r, "not a MaskGIT VQGAN teacher", "quantize.embedding.weight")


# ------------------------------------------------------------------------------------------- generators
@pytest.mark.slow
def test_the_generator_that_fits_each_familys_codes_trains_and_samples(
    trained: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    expected = {  # recipe -> (class, calls per sample): HAR, vanilla AR, LlamaGen's GPT on the grid
        "restok-tiny": ("HARGenerator", None),
        "one-d-piece-tiny-single": ("HARGenerator", 16),
        "llamagen-vq-tiny": ("LlamaGenGPT", 64),
    }
    for recipe, (cls, calls) in expected.items():
        tok, codes, gen = trained[recipe] / "final", tmp_path / f"codes-{recipe}", tmp_path / f"gen-{recipe}"
        r = run_cli("extract-codes", "--tokenizer", tok, "--data", images, "--out", codes, "--crop", "center-only",
                    "--no-progress")  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        r = run_cli("train", "generator", "--config", "har-tiny", "--codes", codes, "--out", gen, "--max-steps", "2",
                    "--no-progress", "trackers=[]", "batch_size=4", "save_every=2", "image_every=100")  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        model = load_generator(str(gen / "final"))
        assert type(model).__name__ == cls, recipe
        assert calls is None or model.config.num_steps == calls
        assert model.config.num_steps < model.config.num_tokens or recipe != "restok-tiny"  # HAR: fewer calls
        r = run_cli("generate", "--tokenizer", tok, "--generator", gen / "final", "--classes", "0", "1",
                    "--out", tmp_path / f"samples-{recipe}", "--no-progress")  # fmt: skip
        assert r.returncode == 0 and len(list((tmp_path / f"samples-{recipe}").glob("*.png"))) >= 2, r.stderr
