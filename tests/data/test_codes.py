"""Code extraction: format, resume, multi-process sharding, validation against the tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restok import ResTok
from restok.data import open_image_source
from restok.runtime.processes import Processes
from restok.train.codes import CodesDataset, CodesError, check_codes, extract_codes, read_meta

QUIET = Processes(progress=False)


@pytest.fixture
def tok(tmp_path) -> ResTok:
    torch.manual_seed(0)
    t = ResTok.from_preset("restok-tiny").eval()
    t.save_pretrained(str(tmp_path / "tok"))
    return ResTok.from_pretrained(str(tmp_path / "tok")).eval()


def test_extract_center_crops_format_and_check(tok, image_folder, tmp_path) -> None:
    src = open_image_source(image_folder)
    meta = extract_codes(tok, src, tmp_path / "codes", crop="center", batch_size=3, shard_size=3, processes=QUIET)
    assert meta["num_samples"] == 8 and meta["num_crops"] == 2 and len(meta["shards"]) == 3
    assert meta["num_classes"] == 2 and meta["class_names"] == ["class0", "class1"]
    codes = np.load(tmp_path / "codes" / "shard-00000.codes.npy")
    assert codes.shape == (3, 2, 32) and codes.dtype == np.uint16
    report = check_codes(tmp_path / "codes", tok, src, num_verify=2)
    assert report["num_samples"] == 8 and report["verified"] == 2
    ds = CodesDataset(tmp_path / "codes")
    item = ds[(4, 123)]
    assert item["tokens"].shape == (32,) and item["tokens"].dtype == torch.int64 and item["label"] == 1
    assert torch.equal(item["tokens"], ds[(4, 123)]["tokens"])
    crops = {tuple(ds[(4, s)]["tokens"].tolist()) for s in range(20)}
    assert crops <= {
        tuple(c) for c in np.load(tmp_path / "codes" / "shard-00001.codes.npy")[1].astype(np.int64).tolist()
    }


def test_ten_crop_equals_direct_encoding(tok, image_folder, tmp_path) -> None:
    from restok.data import decode_image, pil_to_tensor
    from restok.train.codes import crops_of

    src = open_image_source(image_folder)
    extract_codes(tok, src, tmp_path / "codes", crop="ten-crop", batch_size=4, shard_size=100, processes=QUIET)
    stored = np.load(tmp_path / "codes" / "shard-00000.codes.npy")
    assert stored.shape == (8, 10, 32)
    crops = crops_of(decode_image(src.records[5].read()), 32, "ten-crop")
    direct = tok.encode(torch.stack([pil_to_tensor(c) for c in crops])).numpy()
    assert np.array_equal(stored[5].astype(np.int64), direct)


def test_resume_and_multiprocess_sharding(tok, image_folder, tmp_path) -> None:
    src = open_image_source(image_folder)
    ref = extract_codes(tok, src, tmp_path / "ref", crop="center", shard_size=3, processes=QUIET)
    out = tmp_path / "split"
    # two "processes": rank 1 does shard 1, rank 0 does shards 0 and 2 and writes meta
    assert extract_codes(tok, src, out, crop="center", shard_size=3, processes=Processes(1, 2, progress=False)) is None
    assert not (out / "meta.json").exists()
    meta = extract_codes(tok, src, out, crop="center", shard_size=3, processes=Processes(0, 2, progress=False))
    for k in range(3):
        a = np.load(tmp_path / "ref" / f"shard-{k:05d}.codes.npy")
        assert np.array_equal(a, np.load(out / f"shard-{k:05d}.codes.npy"))
    assert meta["num_samples"] == ref["num_samples"]
    # resume: a shard lost before meta.json was written is redone; complete ones are kept
    (out / "meta.json").unlink()
    (out / "shard-00001.codes.npy").unlink()
    kept = (out / "shard-00000.codes.npy").stat().st_mtime_ns
    extract_codes(tok, src, out, crop="center", shard_size=3, processes=QUIET)
    assert (out / "shard-00000.codes.npy").stat().st_mtime_ns == kept
    assert np.array_equal(np.load(out / "shard-00001.codes.npy"), np.load(tmp_path / "ref" / "shard-00001.codes.npy"))
    with pytest.raises(CodesError, match="already holds"):
        extract_codes(tok, src, out, crop="center", shard_size=3, processes=QUIET)


def test_check_detects_problems(tok, image_folder, tmp_path) -> None:
    src = open_image_source(image_folder)
    out = tmp_path / "codes"
    extract_codes(tok, src, out, crop="center", shard_size=4, processes=QUIET)
    arr = np.load(out / "shard-00001.codes.npy")
    arr[0, 0, 0] = 2000  # outside the 1024-code book
    np.save(out / "shard-00001.codes.npy", arr)
    with pytest.raises(CodesError, match="outside"):
        check_codes(out)
    other = ResTok.from_preset("restok-tiny", num_tokens=16)
    with pytest.raises(CodesError, match="does not match"):
        check_codes(out, other)
    meta = json.loads((out / "meta.json").read_text())
    meta["format"] = "something"
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CodesError, match="not a restok code set"):
        read_meta(out)
    with pytest.raises(CodesError, match="no meta.json"):
        read_meta(tmp_path)


def test_unreadable_images_left_out_and_listed(tok, image_folder, tmp_path) -> None:
    (image_folder / "class1" / "002.png").write_bytes(b"garbage")
    meta = extract_codes(tok, open_image_source(image_folder), tmp_path / "c", crop="center", processes=QUIET)
    assert meta["num_samples"] == 7 and len(meta["skipped"]) == 1 and "002.png" in meta["skipped"][0]
    idx = np.load(tmp_path / "c" / "shard-00000.indices.npy")
    assert 6 not in idx.tolist()


def test_center_only_crop_has_no_mirror(tok, image_folder, tmp_path) -> None:
    from restok.data import decode_image, pil_to_tensor
    from restok.train.codes import crops_of

    src = open_image_source(image_folder)
    meta = extract_codes(tok, src, tmp_path / "codes", crop="center-only", shard_size=100, processes=QUIET)
    assert meta["num_crops"] == 1 and meta["crop"] == "center-only"
    stored = np.load(tmp_path / "codes" / "shard-00000.codes.npy")
    assert stored.shape == (8, 1, 32)
    (crop,) = crops_of(decode_image(src.records[2].read()), 32, "center-only")
    assert np.array_equal(stored[2, 0], tok.encode(pil_to_tensor(crop)[None]).numpy()[0])
    assert check_codes(tmp_path / "codes", tok, src, num_verify=2)["verified"] == 2


def test_resume_under_other_settings_is_refused_and_check_codes_sees_mixed_layouts(tok, image_folder, tmp_path) -> None:
    import shutil

    src = open_image_source(image_folder)
    out = tmp_path / "codes"
    extract_codes(tok, src, out, crop="center", batch_size=4, shard_size=3, processes=QUIET)
    (out / "meta.json").unlink()  # as if killed before the end
    (out / "shard-00002.codes.npy").unlink()
    for change, name in (
        ({"shard_size": 4}, "shard_size"),
        ({"crop": "center-only"}, "crop"),
        ({"batch_size": 2}, "batch_size"),
    ):
        kw = {"crop": "center", "batch_size": 4, "shard_size": 3, **change}
        with pytest.raises(CodesError, match=name):
            extract_codes(tok, src, out, processes=QUIET, **kw)
    torch.manual_seed(1)
    other = ResTok.from_preset("restok-tiny").eval()
    with pytest.raises(CodesError, match="tokenizer"):
        extract_codes(other, src, out, crop="center", batch_size=4, shard_size=3, processes=QUIET)
    with pytest.raises(CodesError, match="shard size"):
        extract_codes(tok, src, tmp_path / "zero", shard_size=0, processes=QUIET)
    meta = extract_codes(
        tok, src, out, crop="center", batch_size=4, shard_size=3, processes=QUIET
    )  # same settings: resumes
    assert meta["num_samples"] == 8 and check_codes(out, tok, src)["num_samples"] == 8
    # a set whose shards were written with two shard sizes is caught by check-codes, not passed
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    extract_codes(tok, src, tmp_path / "four", crop="center", batch_size=4, shard_size=4, processes=QUIET)
    shutil.copy(tmp_path / "four" / "shard-00001.codes.npy", mixed / "shard-00001.codes.npy")
    shutil.copy(tmp_path / "four" / "shard-00001.indices.npy", mixed / "shard-00001.indices.npy")
    shutil.copy(tmp_path / "four" / "shard-00001.labels.npy", mixed / "shard-00001.labels.npy")
    with pytest.raises(CodesError, match="shard"):
        check_codes(mixed)
    with pytest.raises(CodesError, match="not this one"):
        check_codes(out, other)
