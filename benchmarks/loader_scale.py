"""The training data path at ImageNet scale: index cost, start-up time and loader throughput on 100k-200k JPEGs in a
few hundred tar shards, beside the ``webdataset`` library's own pipeline on the same shards and workers.

    pip install webdataset psutil   # the comparison and the memory figures
    python benchmarks/loader_scale.py --images 120000 --shards 300 --root /tmp/loader-bench --workers 1 2 4

The set: a pool of 2,000 distinct synthetic JPEGs at natural-image sizes (500x375, 500x333, 375x500, 500x500,
640x480, 400x300, ...; smooth colour fields plus grain, quality 90, about 100 KB each), written round-robin into the
shards with ``.cls`` labels (i mod 1000). Decoding cost is that of unique images of those sizes; the pool only saves
the generation time. Per measurement a fresh process:

* index: ``open_image_source(root)`` (reads every tar header once): seconds and the process's resident-memory growth;
* start: index + dataset + step sampler + DataLoader until the first batch (the time a run waits before step 1);
* throughput: images/s the training loader delivers (decode + ADM random resized crop + flip at 256, batches of 64)
  with 1, 2 and 4 workers, and the same for ``webdataset.WebDataset(...).decode("pil")`` with the same crop and flip
  code, in the same run (ratio = restok / webdataset).

Prints one table; the figures go to benchmarks/RESULTS.md with the extrapolation to 1.28M images.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

SIZES = [(500, 375), (500, 333), (375, 500), (500, 500), (640, 480), (400, 300), (500, 400), (333, 500)]
POOL = 2000


def _pool_image(i: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(i)
    w, h = SIZES[i % len(SIZES)]
    low = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.int16)
    img = Image.fromarray(np.clip(base + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _write_shard(args: tuple[Path, int, int, int]) -> None:
    root, k, start, end = args
    path = root / f"shard-{k:06d}.tar"
    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tf:
        for j in range(start, end):
            data = _POOL[j % POOL]
            for name, payload in ((f"{j:08d}.jpg", data), (f"{j:08d}.cls", str(j % 1000).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    os.replace(tmp, path)


_POOL: list[bytes] = []


def _init_pool(pool: list[bytes]) -> None:
    global _POOL
    _POOL = pool


def build(root: Path, images: int, shards: int) -> None:
    """The shards (skipping finished ones)."""
    root.mkdir(parents=True, exist_ok=True)
    with mp.Pool(2) as p:
        pool = p.map(_pool_image, range(POOL))
    per = -(-images // shards)
    jobs = [(root, k, k * per, min(images, (k + 1) * per)) for k in range(shards) if k * per < images]
    with mp.Pool(2, initializer=_init_pool, initargs=(pool,)) as p:
        p.map(_write_shard, jobs)


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def measure_index(root: str) -> dict[str, float]:
    """Index seconds and resident-memory growth of one process."""
    import torch  # noqa: F401 - loaded before the baseline, as in a run

    from restok.data.sources import open_image_source

    r0, t0 = _rss(), time.perf_counter()
    src = open_image_source(root)
    return {"images": len(src), "index_s": time.perf_counter() - t0, "index_mb": (_rss() - r0) / 1e6}


def _crop(img, seed: int):  # noqa: ANN001, ANN202 - PIL image in, tensor out
    import torch
    from PIL import Image

    from restok.data.images import pil_to_tensor
    from restok.data.transforms import adm_random_crop

    gen = torch.Generator().manual_seed(seed)
    img = adm_random_crop(img.convert("RGB"), 256, gen, 0.8, 1.0)
    if float(torch.rand(1, generator=gen)) < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return pil_to_tensor(img)


def measure_restok(root: str, workers: int, batches: int) -> dict[str, float]:
    """Start-up (index to first batch) and images/s of restok's training loader."""
    import torch

    from restok.data.datasets import ImageDataset, StepBatchSampler, collate_images
    from restok.data.sources import open_image_source

    t0 = time.perf_counter()
    src = open_image_source(root)
    ds = ImageDataset(src, 256, train=True)
    sampler = StepBatchSampler(len(src), 64, 0, 1, 0, 0, batches + 1)
    dl = torch.utils.data.DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_images,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    it = iter(dl)
    next(it)
    start = time.perf_counter() - t0
    t1, n = time.perf_counter(), 0
    for batch in it:
        n += batch["image"].shape[0]
    return {"start_s": start, "images_per_s": n / (time.perf_counter() - t1)}


def measure_webdataset(root: str, workers: int, batches: int) -> dict[str, float]:
    """images/s of webdataset's pipeline on the same shards, with the same crop and flip."""
    import webdataset as wds

    urls = sorted(str(p) for p in Path(root).glob("*.tar"))
    ds = (
        wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node, empty_check=False)
        .decode("pil")
        .to_tuple("jpg", "cls")
        .map(lambda s: (_crop(s[0], hash(s[1]) & 0xFFFF), s[1]))
        .batched(64, partial=False)
    )
    dl = wds.WebLoader(ds, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None)
    it = iter(dl)
    next(it)
    t1, n = time.perf_counter(), 0
    for _ in range(batches):
        n += next(it)[0].shape[0]
    return {"images_per_s": n / (time.perf_counter() - t1)}


def _child(kind: str, root: str, workers: int, batches: int) -> dict[str, float]:
    """One measurement in a fresh interpreter (no warm page cache of this process, no leftover workers)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import loader_scale as b; "
        f"print(json.dumps(b.{kind}({root!r}" + (f", {workers}, {batches}" if kind != "measure_index" else "") + ")))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Build the set if needed and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=120_000)
    ap.add_argument("--shards", type=int, default=300)
    ap.add_argument("--root", type=Path, default=Path("/tmp/loader-bench"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--batches", type=int, default=30, help="batches of 64 timed per configuration")
    args = ap.parse_args()
    t0 = time.perf_counter()
    build(args.root, args.images, args.shards)
    size = sum(p.stat().st_size for p in args.root.glob("*.tar"))
    print(
        f"set: {args.images:,} images in {args.shards} shards, {size / 1e9:.1f} GB ({time.perf_counter() - t0:.0f} s "
        "to build or find)"
    )
    (args.root / ".restok-index.npz").unlink(missing_ok=True)
    for what in ("scan (first start; writes the cache)", "cached (every later start)"):
        idx = _child("measure_index", str(args.root), 0, 0)
        per_m = 1.28e6 / idx["images"]
        print(
            f"index, {what}: {idx['index_s']:.2f} s, {idx['index_mb']:.0f} MB per process "
            f"(-> 1.28M images: {idx['index_s'] * per_m:.1f} s, {idx['index_mb'] * per_m:.0f} MB)"
        )
    print("| workers | restok start (s) | restok images/s | webdataset images/s | ratio |")
    print("|---|---|---|---|---|")
    for w in args.workers:
        r = _child("measure_restok", str(args.root), w, args.batches)
        d = _child("measure_webdataset", str(args.root), w, args.batches)
        print(
            f"| {w} | {r['start_s']:.2f} | {r['images_per_s']:.1f} | {d['images_per_s']:.1f} | "
            f"{r['images_per_s'] / d['images_per_s']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
