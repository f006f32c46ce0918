"""Data sources (folders, tar shards), the official crops, the step-keyed sampler, skipping bad files."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from restok.data import (
    DataError,
    ImageDataset,
    StepBatchSampler,
    adm_center_crop,
    adm_random_crop,
    open_image_source,
    ten_crop,
)


def test_folder_source_classes_and_flat(image_folder, tmp_path) -> None:
    src = open_image_source(image_folder)
    assert src.class_names == ["class0", "class1"] and len(src) == 8
    assert [r.label for r in src.records] == [0] * 4 + [1] * 4
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, p in enumerate(sorted((image_folder / "class0").iterdir())):
        (flat / f"{i}.png").write_bytes(p.read_bytes())
    f = open_image_source(flat)
    assert f.num_classes == 0 and {r.label for r in f.records} == {-1}
    with pytest.raises(DataError, match="does not exist"):
        open_image_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_image_source(tmp_path / "empty")


def _write_shard(path, items) -> None:
    with tarfile.open(path, "w") as tf:
        for key, img, label in items:
            for ext, data in (("jpg", img), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 24), color).save(buf, format="JPEG")
    return buf.getvalue()


def test_tar_shards_indexed_with_labels(tmp_path) -> None:
    _write_shard(tmp_path / "train-0000.tar", [("a", _jpeg((255, 0, 0)), 0), ("b", _jpeg((0, 255, 0)), 2)])
    _write_shard(tmp_path / "train-0001.tar", [("c", _jpeg((0, 0, 255)), 1)])
    for spec in (tmp_path, str(tmp_path / "train-{0000..0001}.tar")):
        src = open_image_source(spec)
        assert len(src) == 3 and src.num_classes == 3
        assert [r.label for r in src.records] == [0, 2, 1]
    ds = ImageDataset(open_image_source(tmp_path), 16, train=False)
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["image"][0].mean() > 0.9


def test_corrupt_files_are_skipped_and_named(image_folder) -> None:
    (image_folder / "class0" / "000.png").write_bytes(b"not an image")
    ds = ImageDataset(open_image_source(image_folder), 32, train=True)
    item = ds[(0, 5)]
    assert item["index"] == 1 and len(item["skipped"]) == 1 and "000.png" in item["skipped"][0]


def test_adm_crops_and_ten_crop() -> None:
    img = Image.fromarray((np.arange(60 * 80 * 3) % 251).astype("uint8").reshape(60, 80, 3))
    assert adm_center_crop(img, 32).size == (32, 32)
    g = torch.Generator().manual_seed(0)
    crops = {adm_random_crop(img, 32, g).tobytes() for _ in range(5)}
    assert len(crops) > 1 and all(len(c) == 32 * 32 * 3 for c in crops)
    base = adm_center_crop(img, 35)
    ten = ten_crop(base, 32)
    assert len(ten) == 10
    assert ten[0].tobytes() == base.crop((0, 0, 32, 32)).tobytes()
    assert ten[4].tobytes() == base.crop((2, 2, 34, 34)).tobytes()  # torchvision: top = round((35 - 32) / 2)
    assert ten[5].tobytes() == base.transpose(Image.FLIP_LEFT_RIGHT).crop((0, 0, 32, 32)).tobytes()


def test_step_sampler_is_a_function_of_seed_and_step() -> None:
    one = StepBatchSampler(10, 4, 0, 1, seed=7, start_step=0, end_step=6)
    batches = list(one)
    assert len(batches) == 6 and all(len(b) == 4 for b in batches)
    # every epoch (2 batches of 4 from 10 samples) has distinct indices
    assert len({i for i, _ in batches[0] + batches[1]}) == 8
    resumed = list(StepBatchSampler(10, 4, 0, 1, seed=7, start_step=3, end_step=6))
    assert resumed == batches[3:]
    r0 = list(StepBatchSampler(10, 4, 0, 2, seed=7, start_step=0, end_step=6))
    r1 = list(StepBatchSampler(10, 4, 1, 2, seed=7, start_step=0, end_step=6))
    assert [a + b for a, b in zip(r0, r1)] == batches
    other = list(StepBatchSampler(10, 4, 0, 1, seed=8, start_step=0, end_step=6))
    assert other != batches
    with pytest.raises(DataError, match="divisible"):
        StepBatchSampler(10, 3, 0, 2, 0, 0, 1)
    with pytest.raises(DataError, match="fewer than one global batch"):
        StepBatchSampler(3, 4, 0, 1, 0, 0, 1)


def test_train_transform_seeded_per_sample(image_folder) -> None:
    ds = ImageDataset(open_image_source(image_folder), 32, train=True)
    assert torch.equal(ds[(2, 11)]["image"], ds[(2, 11)]["image"])
    distinct = {ds[(2, seed)]["image"].numpy().tobytes() for seed in range(11, 17)}
    assert len(distinct) >= 2  # crops and flips follow the per-sample seed
