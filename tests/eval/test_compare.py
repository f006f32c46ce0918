"""``restok eval compare``: several families under one protocol give the numbers separate ``eval reconstruction`` runs
give, at every budget each supports; the table, the plot and resume."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch

from restok.core.registry import model_class
from restok.models.layers.perceptual import VGG16Features
from tests.helpers import launch_ranks, one_thread, run_cli, write_image_folder


@pytest.fixture(scope="module")
def family_models(tmp_path_factory) -> dict[str, Path]:
    """Random-weight tiny tokenizers of four families, saved in restok's format."""
    d = tmp_path_factory.mktemp("families")
    out = {}
    for family, preset in (
        ("restok", "restok-tiny"),
        ("titok", "titok-tiny"),
        ("one-d-piece", "one-d-piece-tiny"),
        ("llamagen-vq", "llamagen-vq-tiny"),
    ):
        torch.manual_seed(0)
        model_class(family).from_preset(preset).save_pretrained(d / preset)
        out[family] = d / preset
    return out


@pytest.mark.slow
def test_compare_equals_separate_reconstruction_runs(
    family_models: dict[str, Path], inception_torchscript: str, tmp_path: Path
) -> None:
    data = write_image_folder(tmp_path / "images", classes=2, per_class=3, size=(40, 36))
    toks = [family_models[f] for f in ("one-d-piece", "titok", "llamagen-vq")]
    vgg = tmp_path / "vgg16.pth"  # random VGG16 weights in torchvision's layout (the real file is not in any wheel)
    torch.manual_seed(0)
    torch.save(VGG16Features().state_dict(), vgg)
    args = [
        "--data",
        str(data),
        "--inception-weights",
        inception_torchscript,
        "--no-progress",
        "--batch-size",
        "4",
        "--lpips",
        "--lpips-vgg",
        str(vgg),
    ]
    ran = run_cli(
        "eval", "compare", *[a for t in toks for a in ("--tokenizer", str(t))], "--out", str(tmp_path / "cmp"), *args
    )
    assert ran.returncode == 0, ran.stderr
    table = json.loads((tmp_path / "cmp" / "table.json").read_text())
    rows = table["rows"]
    # every budget each supports: One-D-Piece's prefix lengths, TiTok's and LlamaGen's one length
    assert [(r["tokenizer"], r["tokens"]) for r in rows] == [("one-d-piece-tiny", k) for k in (1, 2, 4, 8, 16)] + [
        ("titok-tiny", 8),
        ("llamagen-vq-tiny", 64),
    ]
    speed = json.loads((tmp_path / "cmp" / "speed.json").read_text())
    assert [(r["tokenizer"], r["tokens"]) for r in speed["rows"]] == [(r["tokenizer"], r["tokens"]) for r in rows]
    assert all(
        r["encode_images_per_s"] > 0 and r["decode_images_per_s"] > 0 and r["images"] == 4 for r in speed["rows"]
    )
    assert not any("images_per_s" in k for r in rows for k in r)  # speeds vary by run: never in the table
    assert set(table["versions"]) >= {"torch", "numpy", "pillow"} and "vgg16.pth" in table["lpips"]
    assert all(0 < r["lpips"] < 5 for r in rows)
    with open(tmp_path / "cmp" / "table.csv") as f:
        assert [row["tokenizer"] for row in csv.DictReader(f)] == [r["tokenizer"] for r in rows]
    assert (tmp_path / "cmp" / "table.md").read_text().count("\n| ") == len(rows)
    assert (tmp_path / "cmp" / "rate.png").stat().st_size > 1000
    # the same numbers as a separate `restok eval reconstruction` of each tokenizer at each budget
    for r in rows[3:]:  # One-D-Piece at 4 and 8 tokens, TiTok, LlamaGen
        alone = tmp_path / f"{r['tokenizer']}-{r['tokens']}.json"
        got = run_cli(
            "eval",
            "reconstruction",
            "--tokenizer",
            r["source"],
            "--tokens",
            str(r["tokens"]),
            "--out",
            str(alone),
            *args,
        )
        assert got.returncode == 0, got.stderr
        single = json.loads(alone.read_text())
        for key in ("rfid", "psnr", "ssim", "lpips", "codebook_usage", "codebook_entropy"):
            assert single[key] == pytest.approx(r[key], rel=1e-9, abs=1e-12), (r["tokenizer"], r["tokens"], key)
    # a rerun resumes: nothing is recomputed, the table is the same
    again = run_cli(
        "eval",
        "compare",
        *[a for t in toks for a in ("--tokenizer", str(t))],
        "--out",
        str(tmp_path / "cmp"),
        *args,
        "--no-speed",
    )
    assert again.returncode == 0, again.stderr
    rerun = json.loads((tmp_path / "cmp" / "table.json").read_text())["rows"]
    assert [(r["tokens"], r["psnr"], r["rfid"]) for r in rerun] == [(r["tokens"], r["psnr"], r["rfid"]) for r in rows]


def test_compare_needs_tokenizers_and_names_a_bad_one(tmp_path: Path, inception_torchscript: str) -> None:
    data = write_image_folder(tmp_path / "images", classes=1, per_class=2)
    r = run_cli("eval", "compare", "--data", str(data), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--tokenizer" in r.stderr
    r = run_cli(
        "eval",
        "compare",
        "--tokenizer",
        str(tmp_path / "missing"),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
        "--inception-weights",
        inception_torchscript,
        "--no-progress",
    )
    assert r.returncode != 0 and "missing" in r.stderr and "Traceback" not in r.stderr


def test_lpips_offline_needs_the_vgg_file(
    tmp_path: Path, inception_torchscript: str, family_models: dict[str, Path], monkeypatch
) -> None:
    monkeypatch.setenv("RESTOK_OFFLINE", "1")
    data = write_image_folder(tmp_path / "images", classes=1, per_class=2)
    r = run_cli(
        "eval",
        "compare",
        "--tokenizer",
        family_models["titok"],
        "--data",
        data,
        "--out",
        tmp_path / "o",
        "--lpips",
        "--inception-weights",
        inception_torchscript,
        "--no-progress",
    )
    assert r.returncode != 0 and "--lpips-vgg" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_cli(
        "eval",
        "reconstruction",
        "--tokenizer",
        family_models["titok"],
        "--data",
        data,
        "--out",
        tmp_path / "o.json",
        "--lpips-vgg",
        "x.pth",
        "--inception-weights",
        inception_torchscript,
    )
    assert r.returncode != 0 and "add --lpips" in r.stderr


@pytest.mark.slow
def test_compare_split_over_two_torchrun_processes_gives_the_same_table(
    family_models: dict[str, Path], inception_torchscript: str, tmp_path: Path
) -> None:

    data = write_image_folder(tmp_path / "images", classes=2, per_class=3, size=(40, 36))
    args = [
        "eval",
        "compare",
        "--tokenizer",
        str(family_models["one-d-piece"]),
        "--tokenizer",
        str(family_models["restok"]),
        "--data",
        str(data),
        "--inception-weights",
        inception_torchscript,
        "--no-progress",
        "--batch-size",
        "2",
        "--no-speed",
        "--device",
        "cpu",
    ]
    with one_thread():  # as each launched process
        one = run_cli(*args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = launch_ranks([*args, "--out", str(tmp_path / "two")], 29531)
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "table.json").read_text())["rows"]
    b = json.loads((tmp_path / "two" / "table.json").read_text())["rows"]
    keys = ("tokenizer", "tokens", "rfid", "psnr", "ssim", "codebook_usage", "codebook_entropy", "num_images")
    assert len(a) == len(b) == 9  # One-D-Piece at 1..16, ResTok at 4..32
    for ra, rb in zip(a, b):
        assert [ra[k] for k in keys[:2]] == [rb[k] for k in keys[:2]]
        assert [ra[k] for k in keys[2:]] == pytest.approx([rb[k] for k in keys[2:]], rel=1e-9, abs=1e-12)
    assert json.loads((tmp_path / "two" / "one-d-piece-tiny.json").read_text())["settings"]["processes"] == 2


def test_labels_stay_unique_and_timing_passes_over_unreadable_images(tmp_path: Path) -> None:
    from restok.data.sources import open_image_source
    from restok.eval.compare import _speed_batch, entry_labels

    assert [e.label for e in entry_labels(["a/titok", "b/titok", "c/titok_2", "d/titok.safetensors"])] == [
        "titok",
        "titok_2",
        "titok_2_2",
        "titok_3",
    ]
    data = write_image_folder(tmp_path / "images", classes=1, per_class=3)
    first = sorted((data / "class0").iterdir())[0]
    first.write_bytes(b"broken")
    batch = _speed_batch(open_image_source(data), 32, 4, None)
    assert batch.shape == (2, 3, 32, 32)
    assert _speed_batch(open_image_source(data), 32, 4, 2).shape == (1, 3, 32, 32)  # only the evaluated images


def test_labels_never_take_the_names_of_the_comparisons_own_files() -> None:
    from restok.eval.compare import RESERVED_LABELS, entry_labels

    got = [e.label for e in entry_labels(["x/table", "y/rate.safetensors", "speed", "table"])]
    assert got == ["table_2", "rate_2", "speed_2", "table_3"]
    assert not set(got) & set(RESERVED_LABELS)


def test_speed_stops_timing_budgets_once_its_time_is_spent() -> None:
    from restok.eval.compare import measure_speed

    class Slow:
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 8, dtype=torch.long)

        def decode(self, ids: torch.Tensor) -> torch.Tensor:
            time.sleep(0.02)
            return torch.zeros(len(ids), 3, 4, 4)

    timed = measure_speed(Slow(), torch.zeros(2, 3, 4, 4), [1, 2, 4, 8], seconds=0.05)  # type: ignore[arg-type]
    assert list(timed) == [1]  # the first budget is always timed; the next would pass the limit
    assert list(measure_speed(Slow(), torch.zeros(2, 3, 4, 4), [1, 2], seconds=None)) == [1, 2]  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_quality_table_is_byte_identical_between_runs_and_after_a_resume(
    family_models: dict[str, Path], inception_torchscript: str, tmp_path: Path
) -> None:
    data = write_image_folder(tmp_path / "images", classes=2, per_class=2, size=(40, 36))
    base = ["eval", "compare", "--tokenizer", family_models["titok"], "--data", data, "--no-progress"]
    base += ["--inception-weights", inception_torchscript, "--batch-size", "2", "--speed-seconds", "1"]
    assert run_cli(*base, "--out", tmp_path / "a").returncode == 0
    assert run_cli(*base, "--out", tmp_path / "b").returncode == 0
    names = ("table.json", "table.csv", "table.md")  # (each result JSON also records its date and wall time)
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    assert (tmp_path / "a" / "speed.json").exists() and (tmp_path / "a" / "speed.md").exists()
    # a resume: one batch's chunk and the result gone, the table rewritten from what is left and what is redone
    (tmp_path / "b" / "titok-tiny.json").unlink()
    next((tmp_path / "b" / "titok-tiny.json.work").glob("chunk-*.npz")).unlink()
    assert run_cli(*base, "--out", tmp_path / "b", "--no-speed").returncode == 0
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
