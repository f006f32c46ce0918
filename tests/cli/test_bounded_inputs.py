"""The third adversarial trial's classes, each tried: every byte bounded before it is expanded, nothing a command
opens blocks (FIFOs, devices), the doctor checks its own inputs, labels that mean "no label", a work folder trusted
only for what this job wrote, outputs that never collide, and errors that say what to fix."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restok.runtime.inputs import ArrayLimitError, npz_headers, read_npz
from tests.helpers import ENV, one_line_error, require, run_cli, write_image_folder


def _process(*args: object, timeout: int = 60) -> subprocess.CompletedProcess:
    """``restok ARGS`` in a process of its own: a hang ends in the timeout (and fails the test), not in the suite."""
    return subprocess.run(
        [sys.executable, "-m", "restok", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout
    )


def _npy_header(shape: tuple[int, ...], dtype: str = "<u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- 1. bounded before expanded
def test_config_references_that_fan_out_or_loop_are_refused_naming_the_file(tmp_path: Path, tok_dir: Path) -> None:
    # each level refers to the one below ten times: ~10^8 strings from a file of a few hundred bytes
    levels = {"a0": "x" * 8}
    for i in range(1, 9):
        levels[f"a{i}"] = [f"${{a{i - 1}}}"] * 10
    bomb = tmp_path / "bomb.json"
    bomb.write_text(json.dumps(levels))
    assert bomb.stat().st_size < 1000
    t0 = time.monotonic()
    r = run_cli("convert", tok_dir / "model.safetensors", tmp_path / "out", "--config", bomb)
    assert time.monotonic() - t0 < 10
    one_line_error(r, str(bomb))
    loop = tmp_path / "loop.yaml"
    loop.write_text("a: ${b}\nb: ${a}\n")
    one_line_error(run_cli("convert", tok_dir / "model.safetensors", tmp_path / "out2", "--config", loop), str(loop))


def test_an_npz_header_that_lies_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    lie = tmp_path / "lie.npz"
    with zipfile.ZipFile(lie, "w") as zf:  # declares 14000 x 14000 pixels, holds 1000 bytes
        zf.writestr("arr_0.npy", _npy_header((1, 14000, 14000, 3)) + bytes(1000))
    with pytest.raises(ArrayLimitError, match="declares"):
        npz_headers(lie, "sample batch")
    r = run_cli("eval", "check", lie)
    one_line_error(r, "lie.npz", "arr_0", "declares")
    objects = tmp_path / "objects.npz"
    with zipfile.ZipFile(objects, "w") as zf:
        zf.writestr("ids.npy", _npy_header((2,), "|O") + bytes(16))
    with pytest.raises(ArrayLimitError, match="Python objects"):
        read_npz(objects, "codes file")
    one_line_error(run_cli("detokenize", objects, "--tokenizer", "x", "--out", tmp_path / "o"), "objects.npz")


def test_the_doctors_pixel_bound_comes_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import restok.eval.doctor as doctor

    batch = tmp_path / "b.npz"
    np.savez(batch, arr_0=np.zeros((3, 40, 40, 3), np.uint8), labels=np.arange(3))
    monkeypatch.setattr(doctor, "MAX_IMAGE_PIXELS", 1000)  # 40 x 40 is above it: refused from the header
    one_line_error(run_cli("eval", "check", batch), "header declares images of 40 x 40", "nothing was read")


def test_string_labels_in_a_sample_batch_are_named_as_such(tmp_path: Path) -> None:
    batch = tmp_path / "b.npz"
    np.savez(batch, arr_0=np.zeros((2, 8, 8, 3), np.uint8), labels=np.array(["cat", "dog"]))
    r = run_cli("eval", "check", batch)
    one_line_error(r, "labels", "<U3", "integer label")


# ------------------------------------------------------------------------------------------- 2. nothing blocks
@pytest.mark.slow
def test_a_fifo_planted_in_an_output_folder_never_blocks(
    tmp_path: Path, tok_dir: Path, inception_torchscript: str
) -> None:
    data = write_image_folder(tmp_path / "images", classes=1, per_class=2)
    out = tmp_path / "shards"
    out.mkdir()
    os.mkfifo(out / "prepare.json")
    r = _process("data", "prepare", data, "--out", out, "--no-progress")
    one_line_error(r, "prepare.json")
    cmp = tmp_path / "cmp"
    (cmp / "tok.json.work").mkdir(parents=True)
    os.mkfifo(cmp / "tok.json.work" / "settings.json")
    args = ["--tokenizer", tok_dir, "--data", data, "--out", cmp, "--inception-weights", inception_torchscript]
    r = _process("eval", "compare", *args, "--no-speed", "--no-progress")
    assert r.returncode == 2 and "settings.json" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_a_dataset_row_that_names_a_device_or_a_fifo_is_skipped_and_named(tmp_path: Path) -> None:
    datasets = require("datasets")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 40), (200, 10, 10)).save(good)
    feats = datasets.Features({"image": datasets.Image(decode=False)})
    rows = [{"bytes": None, "path": p} for p in ("/dev/zero", str(fifo), str(good))]
    datasets.Dataset.from_dict({"image": rows}, features=feats).to_parquet(str(tmp_path / "rows.parquet"))
    r = _process("data", "prepare", tmp_path / "rows.parquet", "--out", tmp_path / "out", "--no-progress")
    assert r.returncode == 1, r.stderr  # some inputs failed: named, the rest written
    info = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert info["num_samples"] == 1 and len(info["skipped"]) == 2
    assert "/dev/zero" in info["skipped"][0] and "fifo.png" in info["skipped"][1]


# ------------------------------------------------------------------------------------------- 5. the doctor's inputs
@pytest.mark.parametrize(
    "mu,sigma,words",
    [
        (np.full(4, np.nan), np.eye(4), "NaN"),
        (np.zeros(10), np.ones(10), "do not fit"),
        (np.zeros(3), np.array([[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]]), "symmetric"),
    ],
    ids=["all-nan-mu", "1-d-sigma", "asymmetric-sigma"],
)
def test_the_doctor_checks_the_reference_it_is_given(tmp_path: Path, mu, sigma, words: str) -> None:
    ref = tmp_path / "ref.npz"
    np.savez(ref, mu=mu, sigma=sigma)
    r = run_cli("eval", "check", "--reference", ref)
    assert r.returncode != 0 and "clean" not in r.stdout, r.stdout
    assert any(words in line for line in (r.stdout + r.stderr).splitlines()), r.stdout + r.stderr


# ------------------------------------------------------------------------------------------- 6. "no label"
def _shards_with_an_unlabelled_member(folder: Path) -> Path:
    folder.mkdir()
    with tarfile.open(folder / "shard-000000.tar", "w") as tf:
        for i, label in enumerate((0, 1, None, 1)):
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(buf, "PNG")
            members = [(f"{i:04d}.png", buf.getvalue())]
            if label is not None:
                members.append((f"{i:04d}.cls", str(label).encode()))
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return folder


def test_samples_without_a_label_are_named_by_prepare_check_and_refused_by_extract_codes(
    tmp_path: Path, tok_dir: Path
) -> None:
    shards = _shards_with_an_unlabelled_member(tmp_path / "in")
    r = run_cli("data", "check", shards, "--no-progress")
    assert "1 of 4 samples carry no label" in r.stdout, r.stdout
    r = run_cli("data", "prepare", shards, "--out", tmp_path / "out", "--no-progress")
    assert r.returncode == 0 and "carry no label" in r.stdout, r.stdout + r.stderr
    info = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert info["unlabeled"]["count"] == 1 and info["unlabeled"]["samples"][0].endswith(":0002.png")
    r = run_cli("extract-codes", "--tokenizer", tok_dir, "--data", shards, "--out", tmp_path / "codes")
    one_line_error(r, "carry no label", "0002.png")
    assert not (tmp_path / "codes" / "meta.json").exists()


def test_a_classlabel_of_minus_one_is_no_label(tmp_path: Path) -> None:
    datasets = require("datasets")
    from restok.data.sources import open_image_source

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": buf.getvalue(), "path": None}] * 3, "label": [0, -1, 1]})
    ds.cast(feats).to_parquet(str(tmp_path / "d.parquet"))
    src = open_image_source(tmp_path / "d.parquet")
    assert src.unlabeled() == [1] and "1 of 3 samples carry no label" in (src.unlabeled_note() or "")


# ------------------------------------------------------------------------------------------- 7. a work folder's chunks
def test_a_chunk_planted_in_a_work_folder_is_named_and_redone(
    tmp_path: Path, tok_dir: Path, inception_torchscript: str
) -> None:
    data = write_image_folder(tmp_path / "images", classes=2, per_class=2, size=(40, 36))
    other = write_image_folder(tmp_path / "other", classes=2, per_class=2, size=(36, 40))
    base = ["eval", "reconstruction", "--tokenizer", tok_dir, "--inception-weights", inception_torchscript]
    base += ["--batch-size", "2", "--no-progress"]
    assert run_cli(*base, "--data", data, "--out", tmp_path / "clean.json").returncode == 0
    assert run_cli(*base, "--data", other, "--out", tmp_path / "other.json").returncode == 0
    clean = json.loads((tmp_path / "clean.json").read_text())
    work = tmp_path / "planted.json.work"
    work.mkdir()
    # chunk 0 a link to the other evaluation's chunk, chunk 1 a link to nothing
    os.symlink(tmp_path / "other.json.work" / "chunk-000000.npz", work / "chunk-000000.npz")
    os.symlink(tmp_path / "nothing.npz", work / "chunk-000001.npz")
    r = run_cli(*base, "--data", data, "--out", tmp_path / "planted.json")
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "planted.json").read_text())
    assert got["rfid"] == clean["rfid"] and got["psnr"] == clean["psnr"]  # this data's numbers, not the other's
    assert all(not p.is_symlink() for p in work.iterdir())
    # a regular file copied from the other job (other settings inside it) is redone as well
    (tmp_path / "planted.json").unlink()
    (work / "chunk-000000.npz").write_bytes((tmp_path / "other.json.work" / "chunk-000000.npz").read_bytes())
    assert run_cli(*base, "--data", data, "--out", tmp_path / "planted.json").returncode == 0
    assert json.loads((tmp_path / "planted.json").read_text())["psnr"] == clean["psnr"]


# ------------------------------------------------------------------------------------------- 8. outputs never collide
def test_a_second_preparation_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    a = write_image_folder(tmp_path / "a", classes=1, per_class=2)
    b = write_image_folder(tmp_path / "b", classes=1, per_class=3)
    out = tmp_path / "shards"
    assert run_cli("data", "prepare", a, "--out", out, "--no-progress").returncode == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    r = run_cli("data", "prepare", b, "--out", out, "--no-progress")
    one_line_error(r, "other settings")
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == before
    # shards that no preparation recorded are not overwritten either
    (out / "prepare.json").unlink()
    one_line_error(run_cli("data", "prepare", b, "--out", out, "--no-progress"), "no preparation recorded")


def test_a_preparation_records_its_settings_before_its_first_shard(tmp_path: Path, monkeypatch) -> None:
    import restok.data.prepare as prepare

    a = write_image_folder(tmp_path / "a", classes=1, per_class=2)

    def crash(*args: object, **kwargs: object) -> int:
        assert json.loads((tmp_path / "out" / "prepare.json").read_text())["settings"]["source"]
        raise OSError("disk gone")

    monkeypatch.setattr(prepare, "_write_shard", crash)
    r = run_cli("data", "prepare", a, "--out", tmp_path / "out", "--no-progress")
    assert r.returncode == 2 and "disk gone" in r.stderr


def test_a_running_preparation_holds_its_folder(tmp_path: Path) -> None:
    a = write_image_folder(tmp_path / "a", classes=1, per_class=2)
    (tmp_path / "out").mkdir()
    held = subprocess.Popen(
        [sys.executable, "-c", f"from restok.runtime.locks import FolderLock; import time; "
         f"l = FolderLock({str(tmp_path / 'out')!r}, 'another prepare'); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "held"
        one_line_error(run_cli("data", "prepare", a, "--out", tmp_path / "out", "--no-progress"), "in use")
    finally:
        held.kill()
        held.wait()
