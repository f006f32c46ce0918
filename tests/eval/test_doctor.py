"""``restok eval check`` (the FID doctor): each planted deviation is named in one line (exit 1); clean inputs give no
false alarm (exit 0)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restok.eval.references import statistics_sha256, write_sample_batch
from tests.helpers import run_cli

N, C, SIDE = 50_000, 1000, 8


def clean_images(n: int = N, seed: int = 0) -> np.ndarray:
    """n distinct random 8x8 RGB uint8 images."""
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    """A clean 50,000-sample batch in the official order, its reference, and batches with one deviation each."""
    d = tmp_path_factory.mktemp("doctor")
    images, labels = clean_images(), np.arange(N) % C
    out = {"clean": d / "clean.npz", "ref": d / "ref.npz"}
    write_sample_batch(out["clean"], [images], labels)
    mu, sigma = np.zeros(4), np.eye(4)
    np.savez(out["ref"], mu=mu, sigma=sigma, arr_0=clean_images(16, seed=1))
    planted = {
        "few": (images[:1000], labels[:1000]),
        "dupes": (np.concatenate([images[: N // 2], images[: N // 2]]), labels),  # the same seed for every second half
        "unbalanced": (images, np.where(labels == 3, 4, labels)),
        "shuffled": (images, np.sort(labels)),  # balanced, but class-major order
    }
    for name, (im, lab) in planted.items():
        out[name] = d / f"{name}.npz"
        write_sample_batch(out[name], [im], lab)
    out["big"] = d / "big.npz"
    write_sample_batch(
        out["big"],
        [
            np.zeros((N, 16, 16, 3), np.uint8)
            + np.arange(N, dtype=np.uint32).view(np.uint8).reshape(N, 1, 1, 4)[..., :3]
        ],
        labels,
    )
    out["float"] = d / "float.npz"
    np.savez(out["float"], arr_0=images.astype(np.float32) / 255, labels=labels)
    return out


def check(*args: str) -> tuple[int, list[str]]:
    r = run_cli("eval", "check", *map(str, args))
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, [line for line in r.stdout.splitlines() if line]


def test_clean_batch_has_no_finding(batches: dict[str, Path]) -> None:
    ref_sha = statistics_sha256(np.zeros(4), np.eye(4))
    code, lines = check(batches["clean"], "--reference", batches["ref"], "--reference-sha256", ref_sha)
    assert code == 0 and len(lines) == 1 and lines[0].startswith("clean:"), lines


@pytest.mark.parametrize(
    "name, words",
    [
        ("few", ["1000 samples", "50000"]),
        ("dupes", ["duplicates", "25000 images", "sample 25000 == sample 0"]),
        ("unbalanced", ["not balanced"]),
        ("shuffled", ["official order"]),
        ("big", ["16x16", "8x8"]),
        ("float", ["float32", "8-bit"]),
    ],
)
def test_each_planted_deviation_is_named_in_one_line(batches: dict[str, Path], name: str, words: list[str]) -> None:
    code, lines = check(batches[name], "--reference", batches["ref"])
    assert code == 1
    hits = [line for line in lines if all(w in line for w in words)]
    assert len(hits) == 1, lines
    if name not in ("few",):
        assert not any("samples; the protocol" in line for line in lines), lines  # no false alarm on the count


def test_wrong_reference_and_jpeg_folder(tmp_path: Path, batches: dict[str, Path]) -> None:
    code, lines = check("--reference", batches["ref"], "--reference-sha256", "ab" * 32)
    assert code == 1 and len(lines) == 1 and "another reference batch" in lines[0]
    folder = tmp_path / "samples"
    for c in range(2):
        (folder / f"class{c}").mkdir(parents=True)
        for i in range(3):
            arr = np.random.default_rng(10 * c + i).integers(0, 256, (256, 256, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / f"class{c}" / f"{i}.{'jpg' if i == 0 else 'png'}")
    code, lines = check(folder)
    assert code == 1 and sum("JPEG" in line for line in lines) == 1 and sum("6 samples" in line for line in lines) == 1
    assert not any("balanced" in line or "size" in line for line in lines), lines


def test_results_from_other_evaluators_versions_inception_and_recipes(tmp_path: Path) -> None:
    base = {
        "gfid": 3.1,
        "num_samples": 50000,
        "settings": {
            "protocol": "restok-eval-2",
            "task": "generation",
            "num_samples": 50000,
            "sampling": {
                "cfg_scale": 3.75,
                "cfg_schedule": "step",
                "cfg_start": 0.25,
                "temperature": 1.0,
                "top_k": 0,
                "top_p": 0.95,
            },
            "inception": {"backend": "torchscript", "sha256": "1" * 64, "dtype": "torch.float64"},
            "reference": {"statistics_sha256": "2" * 64},
            "versions": {"pillow": "12.1.0", "torch": "2.13.0", "numpy": "2.3.0"},
        },
    }
    a = tmp_path / "a.json"
    a.write_text(json.dumps(base))
    b_data = copy.deepcopy(base)
    b_data["settings"]["versions"]["pillow"] = "13.0.0"
    b_data["settings"]["inception"]["sha256"] = "3" * 64
    b = tmp_path / "b.json"
    b.write_text(json.dumps(b_data))
    other = tmp_path / "cleanfid.json"
    other.write_text(json.dumps({"fid": 2.9, "mode": "clean"}))
    code, lines = check("--result", a, "--result", a)
    assert code == 0, lines  # the same result twice: nothing differs
    code, lines = check("--result", a, "--result", b, "--result", other)
    assert code == 1 and len(lines) == 3, lines
    assert any("pillow 12.1.0 vs 13.0.0" in x and "bicubic" in x for x in lines)
    assert any("Inception" in x for x in lines) and any("not a restok result" in x for x in lines)


def test_the_recipe_is_checked_against_the_generator_card(tmp_path: Path, saved_models: dict[str, Path]) -> None:
    from restok.models import load_generator

    card = load_generator(saved_models["gen"]).generation_config.to_dict()
    res = {"settings": {"protocol": "restok-eval-2", "task": "generation", "num_samples": 50000, "sampling": card}}
    f = tmp_path / "r.json"
    f.write_text(json.dumps(res))
    assert check("--result", f, "--generator", saved_models["gen"])[0] == 0
    res["settings"]["sampling"] = {**card, "cfg_scale": 9.0}
    f.write_text(json.dumps(res))
    code, lines = check("--result", f, "--generator", saved_models["gen"])
    assert code == 1 and len(lines) == 1 and "cfg_scale=9.0" in lines[0]


def test_nothing_to_check_is_refused_in_one_line() -> None:
    r = run_cli("eval", "check")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "nothing to check" in r.stderr


def test_unreadable_samples_and_files_that_are_not_archives(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((256, 256, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "3.png").write_bytes(b"\x89PNG truncated")
    code, lines = check(folder)
    assert (
        code == 1
        and sum("unreadable: 1 sample file" in x for x in lines) == 1
        and not any("labels" in x for x in lines)
    )
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    r = run_cli("eval", "check", bad)
    assert r.returncode == 2 and "is not an .npz archive" in r.stderr and len(r.stderr.strip().splitlines()) == 1
