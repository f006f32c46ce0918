"""The ``restok`` command line on tiny models saved by the tests, run in-process through ``main(argv)`` (a real
process only where the installed entry point or the environment of a new interpreter is the point)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restok import HARGenerator, ResTok
from restok.data.images import load_image

from ..helpers import ENV, run_cli, run_process

run = run_cli


@pytest.fixture(scope="module")
def models(saved_models) -> dict[str, Path]:
    """A tiny tokenizer and a matching tiny generator saved in our format."""
    return saved_models


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """Images of odd modes and sizes, plus a broken file."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(d / "rgb.png")
    Image.fromarray(rgb).save(d / "photo.jpg", quality=90)
    Image.fromarray(rgb).save(d / "web.webp")
    Image.fromarray(rgb[..., 0]).save(d / "gray.png")
    Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (40, 56, 1), dtype=np.uint8)])).save(d / "alpha.png")
    Image.fromarray(rgb).convert("P").save(d / "palette.png")
    Image.fromarray((rng.integers(0, 65536, (30, 20))).astype(np.uint16)).save(d / "sixteen.png")
    Image.fromarray(rng.integers(0, 256, (8, 300, 3), dtype=np.uint8)).save(d / "wide.png")
    (d / "broken.jpg").write_bytes(b"not an image at all")
    return d


def test_every_subcommand_has_help(capsys):
    from restok.cli import main

    for sub in ("reconstruct", "tokenize", "detokenize", "generate", "convert", "info"):
        assert main([sub, "--help"]) == 0 and f"usage: restok {sub}" in capsys.readouterr().out
    r = run_process("generate", "--help")  # and once through ``python -m restok``
    assert r.returncode == 0 and "--cfg-schedule" in r.stdout


def test_load_image_modes(image_dir):
    for name in ("rgb.png", "photo.jpg", "web.webp", "gray.png", "alpha.png", "palette.png", "sixteen.png", "wide.png"):
        x = load_image(image_dir / name, 32)
        assert x.shape == (3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    gray = load_image(image_dir / "gray.png", 32)
    assert torch.equal(gray[0], gray[1])
    sixteen = load_image(image_dir / "sixteen.png", 32)
    assert sixteen.std() > 0.1  # 16-bit values were scaled, not clipped to white


def test_reconstruct_skips_broken_files_and_counts_them(models, image_dir, tmp_path):
    files = sorted(str(p) for p in image_dir.iterdir())
    r = run(
        "reconstruct",
        *files,
        "--tokenizer",
        str(models["tok"]),
        "--tokens",
        "8",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
    )
    assert r.returncode == 1, r.stderr
    assert "broken.jpg" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "rgb_k8.png").is_file() and (tmp_path / "sixteen_compare.png").is_file()
    assert Image.open(tmp_path / "gray_k8.png").size == (32, 32)
    assert Image.open(tmp_path / "rgb_compare.png").size[0] > 64  # original | reconstruction


def test_reconstruct_all_tokens_writes_the_strip(models, image_dir, tmp_path):
    r = run(
        "reconstruct",
        str(image_dir / "rgb.png"),
        "--tokenizer",
        str(models["tok"]),
        "--tokens",
        "all",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    for k in (4, 8, 16, 32):
        assert (tmp_path / f"rgb_k{k}.png").is_file()
    w, h = Image.open(tmp_path / "rgb_strip.png").size
    assert w > 4 * h  # original + 4 reconstructions side by side


def test_tokenize_then_detokenize(models, image_dir, tmp_path):
    codes = tmp_path / "codes.npz"
    r = run(
        "tokenize",
        str(image_dir / "rgb.png"),
        str(image_dir / "gray.png"),
        "--tokenizer",
        str(models["tok"]),
        "--out",
        str(codes),
    )
    assert r.returncode == 0, r.stderr
    data = np.load(codes)
    assert data["ids"].shape == (2, 32) and data["ids"].max() < 1024
    tok = ResTok.from_pretrained(str(models["tok"]))
    expected = tok.encode(load_image(image_dir / "rgb.png", 32)[None])
    assert np.array_equal(data["ids"][0], expected[0].numpy())
    r = run("detokenize", str(codes), "--out", str(tmp_path / "dec"), "--tokens", "16")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dec" / "rgb.png").is_file() and (tmp_path / "dec" / "gray.png").is_file()
    r = run("detokenize", str(codes), "--out", str(tmp_path / "dec16"), "--tokens", "16", "--pixel-dtype", "bf16")
    assert r.returncode == 0, r.stderr
    a = np.asarray(Image.open(tmp_path / "dec" / "rgb.png"), dtype=np.float64)
    b = np.asarray(Image.open(tmp_path / "dec16" / "rgb.png"), dtype=np.float64)
    assert a.shape == b.shape and np.abs(a - b).mean() < 3.0  # bf16 pixel decoder: within a few 8-bit levels


def test_generate_writes_images_grid_manifest_and_progressive(models, tmp_path):
    r = run(
        "generate",
        "--generator",
        str(models["gen"]),
        "--tokenizer",
        str(models["tok"]),
        "--classes",
        "3",
        "7",
        "--per-class",
        "2",
        "--seed",
        "5",
        "--progressive",
        "--batch-size",
        "3",
        "--sampling",
        "released",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.name for p in tmp_path.glob("*_class*.png") if "progressive" not in p.name)
    assert pngs == ["000000_class3.png", "000001_class3.png", "000002_class7.png", "000003_class7.png"]
    assert (tmp_path / "grid.png").is_file()
    prog = Image.open(tmp_path / "000000_class3_progressive.png")
    assert prog.size[0] > 4 * prog.size[1] - 20  # frames at 4, 8, 16, 32 tokens
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["settings"]["cfg_scale"] == 3.75 and m["settings"]["cfg_schedule"] == "step"
    assert m["settings"]["seed"] == 5 and m["settings"]["num_model_calls"] == 7
    assert len(m["generator"]["sha256"]) == 64 and m["tokenizer"]["config"]["num_tokens"] == 32
    # same seed -> same images
    r2 = run(
        "generate",
        "--generator",
        str(models["gen"]),
        "--tokenizer",
        str(models["tok"]),
        "--classes",
        "3",
        "7",
        "--per-class",
        "2",
        "--seed",
        "5",
        "--batch-size",
        "3",
        "--sampling",
        "released",
        "--out",
        str(tmp_path / "again"),
    )
    assert r2.returncode == 0
    a = np.asarray(Image.open(tmp_path / "000002_class7.png"))
    b = np.asarray(Image.open(tmp_path / "again" / "000002_class7.png"))
    assert np.array_equal(a, b)


@pytest.mark.slow
def test_generate_compile_gives_the_same_images(models, tmp_path, monkeypatch):
    """``--compile`` reaches the compiled sampler and decoder and gives the eager images. Dynamo's tracing backend
    (``aot_eager``) stands in for Inductor here: the flag's wiring is the point; Inductor's kernels are checked against
    eager in tests/sampling/test_compiled.py."""
    from restok.sampling import compiled

    real = compiled._compile
    monkeypatch.setattr(compiled, "_compile", lambda fn, mode, backend: real(fn, mode, "aot_eager"))
    common = [
        "generate",
        "--generator",
        str(models["gen"]),
        "--tokenizer",
        str(models["tok"]),
        "--classes",
        "3",
        "7",
        "--seed",
        "2",
        "--batch-size",
        "2",
        "--sampling",
        "released",
    ]
    eager, comp = (
        run(*common, "--out", str(tmp_path / "eager")),
        run(*common, "--compile", "--out", str(tmp_path / "comp")),
    )
    assert eager.returncode == 0 and comp.returncode == 0, comp.stderr[-2000:]
    for name in ("000000_class3.png", "000001_class7.png"):
        a = np.asarray(Image.open(tmp_path / "eager" / name)).astype(int)
        b = np.asarray(Image.open(tmp_path / "comp" / name)).astype(int)
        assert np.abs(a - b).max() <= 1, name  # same tokens; compiled decode kernels round within 1e-5 of eager
    settings = lambda d: json.loads((tmp_path / d / "manifest.json").read_text())["settings"]  # noqa: E731
    assert settings("comp")["compile"] is True and settings("eager")["compile"] is False


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--classes", "12"], "unknown class: 12 (ids are 0..9)"),
        (["--classes", "golden retriever"], "classes have no names"),
        (["--classes", "1", "--sampling", "nonexistent.json"], "cannot read sampling config"),
        (["--classes", "1", "--top-p", "0"], "argument --top-p: must be in (0, 1], got 0"),
    ],
)
def test_generate_errors_are_one_line(models, tmp_path, extra, message):
    r = run(
        "generate", "--generator", str(models["gen"]), "--tokenizer", str(models["tok"]), *extra, "--out", str(tmp_path)
    )
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_wrong_kind_and_vocab_mismatch(models, tmp_path):
    r = run("reconstruct", "x.png", "--tokenizer", str(models["gen"]), "--out", str(tmp_path))
    assert r.returncode == 2 and "generator checkpoint, not a tokenizer" in r.stderr
    torch.manual_seed(0)
    HARGenerator.from_preset("har-tiny", vocab_size=512).save_pretrained(tmp_path / "gen512")
    r = run(
        "generate",
        "--generator",
        str(tmp_path / "gen512"),
        "--tokenizer",
        str(models["tok"]),
        "--classes",
        "1",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 2 and "does not match the tokenizer" in r.stderr
    r = run("reconstruct", "x.png", "--tokenizer", str(models["tok"]), "--tokens", "6", "--out", str(tmp_path))
    assert r.returncode == 2 and "--tokens: prefix length(s) [6] not allowed" in r.stderr


def test_offline_uncached_hub_id_is_explained(tmp_path):
    env_cache = {"HF_HUB_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "restok",
            "reconstruct",
            "x.png",
            "--tokenizer",
            "someone/missing-model",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**ENV, **env_cache},
        timeout=120,
    )
    assert r.returncode == 2 and "not in the Hugging Face cache" in r.stderr


def test_convert_official_raw_checkpoint(models, tmp_path):
    # an official-style training checkpoint: .bin with extra training tensors, config two folders up
    tok = ResTok.from_pretrained(str(models["tok"]))
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoint-5" / "ema_model"
    ckpt.mkdir(parents=True)
    sd = dict(tok.state_dict())
    sd["foundation_model.model.cls_token"] = torch.zeros(1, 1, 8)
    sd["vf_proj.weight"] = torch.zeros(4, 128, 1, 1)
    torch.save(sd, ckpt / "pytorch_model.bin")
    (run_dir / "config.json").write_text((models["tok"] / "config.json").read_text())
    r = run("convert", str(ckpt / "pytorch_model.bin"), str(tmp_path / "converted"))
    assert r.returncode == 0, r.stderr
    assert "foundation_model (1)" in r.stdout and "vf_proj (1)" in r.stdout
    again = ResTok.from_pretrained(str(tmp_path / "converted"))
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(again.encode(x), tok.encode(x))


def _flags(parser: argparse.ArgumentParser, path: str = "restok") -> dict[str, set[str]]:
    """Every command path and the option strings (and positional names) it takes."""
    out: dict[str, set[str]] = {path: set()}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                out.update(_flags(sp, f"{path} {name}"))
        else:
            out[path] |= set(a.option_strings) or {a.dest}
    return out


def test_no_command_or_flag_of_the_earlier_cli_is_lost():
    """Every command and every spelling of every flag that the CLI had before its restructuring still parses (a renamed
    flag keeps its old spelling as an alias); ``flags-2026-12-02.json`` is that CLI's tree."""
    from restok.cli import build_parser

    before = json.loads((Path(__file__).parent / "flags-2026-12-02.json").read_text())
    now = _flags(build_parser())
    lost = {cmd: sorted(s for opts in flags for s in opts.split("/")) for cmd, flags in before.items()}
    lost = {cmd: [f for f in flags if f not in now.get(cmd, set())] for cmd, flags in lost.items()}
    assert {cmd: flags for cmd, flags in lost.items() if flags} == {}
