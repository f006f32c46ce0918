"""Hugging Face datasets (a save_to_disk folder, parquet files) as sources, and ``restok data prepare|check``: the same
images give the same samples, numbers and trained weights whichever way they are stored."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from restok.data.datasets import ImageDataset
from restok.data.sources import open_image_source
from tests.helpers import require, run_cli, write_image_folder

datasets = require("datasets")  # in the test extra: CI fails rather than skips without it


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """The same 12 images as a class folder, a save_to_disk dataset and a parquet file (labels as ClassLabel)."""
    d = tmp_path_factory.mktemp("stores")
    folder = write_image_folder(d / "folder", classes=3, per_class=4, size=(40, 48))
    src = open_image_source(folder)
    paths = [r.name for r in src.records]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=src.class_names)})
    ds = datasets.Dataset.from_dict({"image": paths, "label": [r.label for r in src.records]}, features=feats)
    ds = ds.cast_column("image", datasets.Image(decode=False)).map(
        lambda ex: {"image": {"bytes": Path(ex["image"]["path"]).read_bytes(), "path": None}}
    )
    ds = ds.cast_column("image", datasets.Image())
    ds.save_to_disk(str(d / "saved"))
    ds.to_parquet(str(d / "data.parquet"))
    return {"folder": folder, "saved": d / "saved", "parquet": d / "data.parquet"}


def test_datasets_read_the_same_samples_as_the_folder(stores: dict[str, Path]) -> None:
    folder = open_image_source(stores["folder"])
    for kind in ("saved", "parquet"):
        src = open_image_source(stores[kind])
        assert len(src) == len(folder) and src.class_names == folder.class_names, kind
        assert [r.label for r in src.records] == [r.label for r in folder.records]
        assert [r.read() for r in src.records] == [r.read() for r in folder.records]  # the stored bytes, in order
        a, b = ImageDataset(src, 32, train=True), ImageDataset(folder, 32, train=True)
        assert torch.equal(a[(5, 77)]["image"], b[(5, 77)]["image"])
        assert "image column 'image', label column 'label'" in src.description


def test_labels_that_do_not_run_0_to_c_are_mapped_and_recorded(tmp_path: Path, stores: dict[str, Path]) -> None:
    folder = open_image_source(stores["folder"])
    ds = datasets.Dataset.from_dict(
        {"picture": [r.read() for r in folder.records], "cls": [(3, 7, 100)[r.label] for r in folder.records]}
    )
    ds.to_parquet(str(tmp_path / "gaps.parquet"))
    src = open_image_source(f"{tmp_path / 'gaps.parquet'}?image=picture&label=cls")
    assert [r.label for r in src.records] == [r.label for r in folder.records]
    assert src.label_map == {"3": 0, "7": 1, "100": 2} and "3->0, 7->1, 100->2" in src.description
    r = run_cli("data", "prepare", f"{tmp_path / 'gaps.parquet'}?label=cls", "--out", tmp_path / "shards")
    assert r.returncode == 2 and "no image column" in r.stderr  # 'picture' is not a known image column name: say so
    r = run_cli(
        "data",
        "prepare",
        f"{tmp_path / 'gaps.parquet'}?image=picture&label=cls&colour=red",
        "--out",
        tmp_path / "shards",
    )
    assert r.returncode == 2 and "colour" in r.stderr


@pytest.mark.slow
def test_same_numbers_and_weights_from_folder_dataset_and_prepared_shards(
    stores: dict[str, Path], tmp_path: Path, inception_torchscript: str
) -> None:
    r = run_cli("data", "prepare", stores["saved"], "--out", tmp_path / "shards", "--max-samples", "5")
    assert r.returncode == 0, r.stderr
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    assert len(shards) == 3 and json.loads((tmp_path / "shards" / "classes.json").read_text())["counts"] == [4, 4, 4]
    ok = run_cli("data", "check", tmp_path / "shards", "--processes", "1", "--workers", "3", "--decode")
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[0])["samples"] == 12, ok.stdout
    evals, weights = {}, {}
    for kind, data in (
        ("folder", stores["folder"]),
        ("saved", stores["saved"]),
        ("parquet", stores["parquet"]),
        ("shards", tmp_path / "shards"),
    ):
        e = run_cli(
            "eval",
            "reconstruction",
            "--tokenizer",
            "restok-tiny-mnist",
            "--data",
            data,
            "--out",
            tmp_path / f"{kind}.json",
            "--inception-weights",
            inception_torchscript,
            "--no-progress",
        )
        assert e.returncode == 0, e.stderr
        res = json.loads((tmp_path / f"{kind}.json").read_text())
        evals[kind] = (res["psnr"], res["rfid"], res["ssim"])
        t = run_cli(
            "train",
            "tokenizer",
            "--config",
            "restok-tiny",
            "--data",
            data,
            "--out",
            tmp_path / f"run-{kind}",
            "--max-steps",
            "2",
            "--no-progress",
            "--device",
            "cpu",
            "batch_size=4",
            "log_every=1",
            "save_every=2",
            "image_every=3",
            "trackers=[]",
        )
        assert t.returncode == 0, t.stderr[-2000:]
        weights[kind] = load_file(str(tmp_path / f"run-{kind}" / "final" / "model.safetensors"))
    assert len(set(evals.values())) == 1, evals
    for kind in ("saved", "parquet", "shards"):
        assert all(torch.equal(weights[kind][k], weights["folder"][k]) for k in weights["folder"]), kind


def test_prepare_resumes_refuses_other_settings_resizes_and_check_names_problems(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "shards"
    assert (
        run_cli("data", "prepare", stores["folder"], "--out", out, "--max-samples", "4", "--resize", "16").returncode
        == 0
    )
    first = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    with tarfile.open(out / "shard-000000.tar") as tf:
        names = tf.getnames()
        import io

        from PIL import Image

        assert names[:2] == ["00000000.png", "00000000.cls"]
        assert min(Image.open(io.BytesIO(tf.extractfile(names[0]).read())).size) == 16
    # a crash after the first shard: the rerun writes the rest, byte-identical
    (out / "shard-000002.tar").unlink()
    (out / "shard-000001.tar").unlink()
    state = json.loads((out / "prepare.json").read_text())
    state["shards"] = state["shards"][:1]
    (out / "prepare.json").write_text(json.dumps(state))
    r = run_cli("data", "prepare", stores["folder"], "--out", out, "--max-samples", "4", "--resize", "16")
    assert r.returncode == 0 and "resuming after 1 finished shard" in r.stdout
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == first
    r = run_cli("data", "prepare", stores["folder"], "--out", out, "--max-samples", "6")
    assert r.returncode == 2 and "other settings" in r.stderr
    # check: a readers count above the shard count, and a corrupted member
    r = run_cli("data", "check", out, "--processes", "2", "--workers", "4")
    assert r.returncode == 1 and "3 shards for 2 processes x 4 workers" in r.stdout
    with tarfile.open(out / "shard-000001.tar") as tf:
        member = tf.getmembers()[0]
    raw = bytearray((out / "shard-000001.tar").read_bytes())
    raw[member.offset_data : member.offset_data + 64] = b"\0" * 64
    (out / "shard-000001.tar").write_bytes(bytes(raw))
    r = run_cli("data", "check", out, "--decode")
    assert r.returncode == 1 and any(
        line.startswith("unreadable:") and member.name in line for line in r.stdout.splitlines()
    ), r.stdout


def test_shard_index_matches_tarfile_and_its_cache_follows_the_shards(tmp_path: Path, stores: dict[str, Path]) -> None:
    import io
    import os
    import time

    from restok.data.shard_index import CACHE_NAME, load_shard_index

    folder = open_image_source(stores["folder"])
    shards = tmp_path / "shards"
    shards.mkdir()
    # three tar dialects: ustar with a prefix, GNU long names, pax long names
    for k, fmt in enumerate((tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT)):
        with tarfile.open(shards / f"s{k}.tar", "w", format=fmt) as tf:
            for i in range(4):
                rec = folder.records[4 * k + i]
                key = (
                    "d" * 120 + "/" if fmt != tarfile.USTAR_FORMAT else "sub/dir/"
                ) + f"{'x' * 90 if k else ''}{4 * k + i:04d}"
                for ext, data in (("png", rec.read()), ("cls", str(rec.label).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    src = open_image_source(shards)
    assert (shards / CACHE_NAME).is_file()
    assert [r.read() for r in src.records] == [r.read() for r in folder.records]
    assert [r.label for r in src.records] == [r.label for r in folder.records]
    with tarfile.open(shards / "s2.tar") as tf:
        assert src.records[8].name.endswith(tf.getmembers()[0].name)
    # a second open reads the cache; a changed shard is indexed again
    t0 = time.perf_counter()
    again = open_image_source(shards)
    assert [r.label for r in again.records] == [r.label for r in src.records] and time.perf_counter() - t0 < 1
    with tarfile.open(shards / "s0.tar", "a", format=tarfile.USTAR_FORMAT) as tf:
        data = folder.records[0].read()
        info = tarfile.TarInfo("extra.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    os.utime(shards / "s0.tar", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert len(open_image_source(shards)) == 13 == len(load_shard_index(sorted(str(p) for p in shards.glob("*.tar"))))


def test_hf_ids_go_through_load_dataset(tmp_path: Path, stores: dict[str, Path]) -> None:
    """``hf:ID`` is ``datasets.load_dataset(ID)``: a dataset repository laid out locally (what the Hub cache serves
    offline) gives the folder's samples."""
    repo = tmp_path / "repo" / "data"
    repo.mkdir(parents=True)
    import shutil

    shutil.copy(stores["parquet"], repo / "train-00000-of-00001.parquet")
    src = open_image_source(f"hf:{tmp_path / 'repo'}?split=train")
    folder = open_image_source(stores["folder"])
    assert [r.read() for r in src.records] == [
        r.read() for r in folder.records
    ] and src.class_names == folder.class_names
    r = run_cli("data", "check", tmp_path / "nothing-here")
    assert r.returncode == 2 and "no .tar shards" in r.stderr
    bad = run_cli(
        "eval",
        "reconstruction",
        "--tokenizer",
        "restok-tiny-mnist",
        "--data",
        f"hf:{tmp_path / 'repo'}?split=test",
        "--out",
        tmp_path / "o.json",
    )
    assert bad.returncode == 2 and "split" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_an_unreadable_image_in_a_dataset_is_named_and_skipped(tmp_path: Path, stores: dict[str, Path]) -> None:
    folder = open_image_source(stores["folder"])
    blobs = [r.read() for r in folder.records]
    blobs[2] = b"not an image at all"
    datasets.Dataset.from_dict({"image": blobs, "label": [r.label for r in folder.records]}).to_parquet(
        str(tmp_path / "bad.parquet")
    )
    src = open_image_source(tmp_path / "bad.parquet")
    item = ImageDataset(src, 32, train=False)[2]
    assert (
        item["index"] == 3
        and len(item["skipped"]) == 1
        and "bad.parquet" in item["skipped"][0]
        and "[2]" in item["skipped"][0]
    )
    r = run_cli("data", "prepare", tmp_path / "bad.parquet", "--out", tmp_path / "shards")
    assert r.returncode == 1 and "1 unreadable sample(s) skipped" in r.stdout
    info = json.loads((tmp_path / "shards" / "classes.json").read_text())
    assert info["num_samples"] == 11 and "[2]" in info["skipped"][0] and sum(info["counts"]) == 11


def test_string_labels_bad_labels_non_tar_shards_and_a_damaged_index_cache(
    tmp_path: Path, stores: dict[str, Path]
) -> None:
    folder = open_image_source(stores["folder"])
    blobs = [r.read() for r in folder.records]
    names = [("cat", "dog", "emu")[r.label] for r in folder.records]
    datasets.Dataset.from_dict({"image": blobs, "label": names}).to_parquet(str(tmp_path / "names.parquet"))
    src = open_image_source(tmp_path / "names.parquet")
    assert src.class_names == ["cat", "dog", "emu"] and [r.label for r in src.records] == [
        r.label for r in folder.records
    ]
    datasets.Dataset.from_dict({"image": blobs, "label": [1.5] * len(blobs)}).to_parquet(
        str(tmp_path / "float.parquet")
    )
    r = run_cli("data", "prepare", tmp_path / "float.parquet", "--out", tmp_path / "o")
    assert r.returncode == 2 and "not class ids" in r.stderr
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "a.tar").write_text("hello world, this is not a tar file" * 20)
    r = run_cli("data", "check", shards)
    assert r.returncode == 2 and "is not a readable tar file" in r.stderr and "a.tar" in r.stderr
    good = tmp_path / "good"
    assert run_cli("data", "prepare", stores["folder"], "--out", good).returncode == 0
    (good / ".restok-index.npz").write_bytes(b"")  # truncated by a full disk, say
    assert len(open_image_source(good)) == 12
