"""Evaluation protocols: rFID (+ PSNR, SSIM, codebook usage/entropy) and gFID (+ IS, precision/recall).

Protocols (``PROTOCOL_VERSION`` is written into every result):

* **Reconstruction** -- TiTok's, as the official ``test_restok.py``: each image through the evaluation transform
  (:func:`restok.images.eval_transform`: torchvision's Resize + CenterCrop, bit for bit); reconstructed from k
  tokens, clamped to [0, 1], rounded to 8 bits; both sides fed to the Inception as ``(x * 255).to(uint8)``;
  rFID is the Fréchet distance between the originals' and the reconstructions' features (not against
  precomputed statistics), computed with SciPy's ``sqrtm`` as the official evaluator; PSNR per image then
  averaged; SSIM as ``pytorch_msssim.ssim``; codebook usage and entropy over all ids; Inception Score over all
  reconstructions in one split (eps 1e-16).
* **Generation** -- the official sampling script's labels: sample i has class ``i mod C`` (``list(range(C)) *
  per_class``, every class once, then again), kept in that order whatever the batch size or process count;
  samples converted as ``clamp(255 x, 0, 255).to(uint8)``; FID against the reference ``mu``/``sigma`` (e.g. ADM's
  ``VIRTUAL_imagenet256_labeled.npz``); precision/recall (k = 3) against the reference activations (computed
  from its ``arr_0`` images with the same Inception when the file has none); Inception Score as the ADM
  evaluator computes it (consecutive splits of 5,000 in sample order, one split below 5,000) when the
  Inception has logits. ``save_samples`` writes exactly the scored images, in that order, as an ADM sample
  batch (``arr_0`` uint8 NHWC, ``labels``), for the ADM TensorFlow evaluator.

Work is split in chunks written to ``<out>.work/``; a rerun skips finished chunks (resume), and chunk k is done
by process k mod world (several GPUs through torchrun/accelerate). Chunk seeds depend only on (seed, chunk).
"""

from __future__ import annotations

import itertools
import math
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from .chunks import ChunkError, ChunkJob
from .data import ImageDataset, ImageSource, derive_seed
from .inception import InceptionFeatures
from .io import atomic_write, save_npy, save_npz, write_json
from .metrics import ADM_IS_SPLIT, codebook_stats, default_fid_method, feature_statistics, frechet_distance, inception_score, precision_recall, psnr, ssim
from .precision import autocast_to
from .sampling import SamplingConfig

__all__ = [
    "PROTOCOL_VERSION",
    "EvaluationError",
    "evaluate_reconstruction",
    "evaluate_generation",
    "generation_labels",
    "reconstruction_batch",
    "summarize_reconstruction",
    "load_reference",
    "make_reference",
    "write_sample_batch",
]

# 2: the evaluation transform equals torchvision's (long side truncated), generation labels in the official order
# (i mod C), Inception Score in ADM's splits of 5,000 (generation) or one split (reconstruction), sqrtm FID.
PROTOCOL_VERSION = "restok-eval-2"
LABEL_ORDER = "sample i has class i mod num_classes (the official sampling script's list(range(C)) * per_class)"


class EvaluationError(RuntimeError):
    """An evaluation that cannot give a trustworthy number (too few samples, bad reference file)."""


def to_uint8_truncate(x: torch.Tensor) -> torch.Tensor:
    """The official evaluator's conversion: ``(x * 255).to(uint8)`` (truncation) of [0, 1] images."""
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def _job(out: Path, settings: dict[str, Any], n_chunks: int, rank: int, world: int) -> ChunkJob:
    """The resumable chunks of an evaluation in ``OUT.work/`` (refusing chunks written under other settings)."""
    try:
        return ChunkJob(out.with_name(out.name + ".work"), settings, n_chunks, rank, world)
    except ChunkError as e:
        raise EvaluationError(str(e)) from None


def _merged(job: ChunkJob, barrier: Callable[[], None] | None, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """Wait for every process; on the main one, the chunks concatenated in order (None elsewhere)."""
    try:
        return job.merge(skip) if job.finish(barrier) else None
    except ChunkError as e:
        raise EvaluationError(str(e)) from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_sample_batch(path: str | Path, images: Iterable[np.ndarray], labels: np.ndarray) -> int:
    """Write an ADM sample batch ``.npz`` (``arr_0`` uint8 (N, H, W, 3), ``labels`` (N,)) atomically, streaming
    the image chunks into the archive so that memory holds one chunk at a time; returns N."""
    labels = np.asarray(labels, dtype=np.int64)
    it = iter(images)
    first = next(it, None)
    if first is None:
        raise EvaluationError(f"no images to write to {path}")
    shape = (len(labels), *first.shape[1:])
    written = 0

    def write(tmp: str) -> None:
        nonlocal written
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("arr_0.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_2_0(f, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape})
                for chunk in itertools.chain([first], it):
                    if chunk.shape[1:] != shape[1:]:
                        raise EvaluationError(f"image chunk of shape {chunk.shape} does not fit {shape}")
                    f.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
                    written += len(chunk)
            if written != len(labels):
                raise EvaluationError(f"{written} images but {len(labels)} labels for {path}")
            with zf.open("labels.npy", "w") as f:
                np.lib.format.write_array(f, labels)

    atomic_write(path, write)
    return written


# ------------------------------------------------------------------------------------------- reconstruction
@torch.no_grad()
def reconstruction_batch(
    tokenizer: Any, x: torch.Tensor, tokens: int | Sequence[int], inception: InceptionFeatures | None = None,
    pixel_dtype: torch.dtype = torch.float32,
) -> dict[str, np.ndarray]:
    """Per-image results of one batch (B, 3, S, S) in [0, 1] under the reconstruction protocol: ``psnr``,
    ``ssim`` (NaN below 11 px), ``ids`` and, with an Inception, ``real``/``fake`` features and ``logits``.

    With several prefix lengths (the rate curve) the images are encoded once and each prefix decoded: the arrays of
    length k are keyed ``psnr@k``, ``ssim@k``, ``fake@k``, ``logits@k``; ``ids`` holds the longest prefix.
    """
    if not isinstance(tokens, int):
        ks = sorted(int(k) for k in tokens)
        ids = tokenizer.encode(x)[:, : ks[-1]]
        out: dict[str, np.ndarray] = {"ids": ids.cpu().numpy().astype(np.int64)}
        if inception is not None:
            out["real"] = inception(to_uint8_truncate(x))[0].cpu().numpy()
        for k in ks:
            one = _scored(tokenizer, x, ids[:, :k], inception, pixel_dtype)
            out.update({f"{name}@{k}": v for name, v in one.items()})
        return out
    ids = tokenizer.encode(x)[:, :tokens]
    arrays = {**_scored(tokenizer, x, ids, inception, pixel_dtype), "ids": ids.cpu().numpy().astype(np.int64)}
    if inception is not None:
        arrays["real"] = inception(to_uint8_truncate(x))[0].cpu().numpy()
    return arrays


def _scored(tokenizer: Any, x: torch.Tensor, ids: torch.Tensor, inception: InceptionFeatures | None, pixel_dtype: torch.dtype) -> dict[str, np.ndarray]:
    """PSNR, SSIM and (with an Inception) features and logits of the 8-bit reconstruction from ``ids``."""
    rec = tokenizer.decode(ids, pixel_dtype)  # clamped to [0, 1]
    rec = torch.round(rec * 255) / 255  # 8-bit reconstructions, as the official evaluator
    arrays = {
        "psnr": psnr(rec, x).cpu().numpy(),
        "ssim": ssim(rec, x).cpu().numpy() if min(x.shape[-2:]) >= 11 else np.full(len(x), np.nan),
    }
    if inception is not None:
        f_fake, logits = inception(to_uint8_truncate(rec))
        arrays.update(fake=f_fake.cpu().numpy(), logits=logits.cpu().numpy() if logits is not None else np.zeros((len(x), 0)))
    return arrays


def prefix_arrays(arrays: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """The single-length view (``psnr``, ``ids[:, :k]``, ...) of rate-curve arrays at prefix length ``k``."""
    view = {name[: -len(f"@{k}")]: v for name, v in arrays.items() if name.endswith(f"@{k}")}
    view["ids"] = arrays["ids"][:, :k]
    if "real" in arrays:
        view["real"] = arrays["real"]
    return view


def budget_distribution(arrays: dict[str, np.ndarray], lengths: Sequence[int], target_psnr: float) -> dict[str, Any]:
    """For a PSNR target, each image's shortest prefix that meets it (the longest when none does): how many images
    chose each length, the mean tokens per image and the fraction that met the target."""
    table = np.stack([arrays[f"psnr@{k}"] for k in lengths], axis=1)  # (N, n)
    ok = table >= target_psnr
    met = ok.any(axis=1)
    chosen = np.where(met, np.asarray(lengths)[ok.argmax(axis=1)], lengths[-1])
    return {"target_psnr": target_psnr, "lengths": {int(k): int((chosen == k).sum()) for k in lengths},
            "mean_tokens": float(chosen.mean()), "met": float(met.mean())}


def summarize_reconstruction(arrays: dict[str, np.ndarray], codebook_size: int, fid_method: str | None = None) -> dict[str, Any]:
    """The protocol's numbers from the concatenated per-image results of :func:`reconstruction_batch`."""
    n = int(arrays["ids"].shape[0])
    cb = codebook_stats(arrays["ids"], codebook_size)
    out: dict[str, Any] = {
        "psnr": float(np.mean(arrays["psnr"])),
        "ssim": float(np.nanmean(arrays["ssim"])) if np.isfinite(arrays["ssim"]).any() else None,
        "codebook_usage": cb["usage"],
        "codebook_entropy": cb["entropy"],
        "num_images": n,
    }
    if "real" in arrays and n >= 2:
        mu_r, sig_r = feature_statistics(arrays["real"])
        mu_f, sig_f = feature_statistics(arrays["fake"])
        out["rfid"] = frechet_distance(mu_r, sig_r, mu_f, sig_f, method=fid_method or default_fid_method())
    if "logits" in arrays and arrays["logits"].shape[1] > 0:
        out["inception_score"] = inception_score(arrays["logits"], split_size=None, eps=1e-16)[0]
    return out


@torch.no_grad()
def evaluate_reconstruction(
    tokenizer: Any,
    source: ImageSource,
    inception: InceptionFeatures,
    out: str | Path,
    tokens: int | str | Sequence[int] | None = None,
    num_images: int | None = None,
    batch_size: int = 32,
    allow_partial: bool = False,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] | None = None,
    progress: bool = True,
    pixel_dtype: torch.dtype = torch.float32,
    target_psnr: float | None = None,
) -> dict[str, Any] | None:
    """rFID, PSNR, SSIM, codebook usage and entropy of ``tokenizer`` on ``source``; writes ``out`` (JSON).

    ``tokens``: one prefix length (default: all tokens), or ``"all"`` / a list for the rate curve -- every length in
    one pass (each batch encoded once, each prefix decoded), as ``rate_curve`` in the JSON (and ``OUT.png`` when
    matplotlib is installed), the top-level numbers being those of the longest; with ``target_psnr``, also the
    distribution of the shortest prefix meeting it per image. ``pixel_dtype``: the CNN pixel decoder's precision."""
    from tqdm.auto import tqdm

    out = Path(out)
    curve = tokens == "all" or isinstance(tokens, (list, tuple))
    ks = list(tokenizer.prefix_lengths) if tokens == "all" else sorted(int(t) for t in tokens) if curve else [int(tokens or tokenizer.num_tokens)]
    bad = [t for t in ks if t not in tokenizer.prefix_lengths]
    if bad or not ks:
        raise EvaluationError(f"--tokens {bad or ks} is not a prefix length of this tokenizer {list(tokenizer.prefix_lengths)}")
    if target_psnr is not None and not curve:
        raise EvaluationError("a PSNR target needs the rate curve: pass --tokens all")
    k = ks[-1]
    available = len(source)
    asked = num_images or available
    if asked > available and not allow_partial:
        raise EvaluationError(
            f"asked for {asked} images but the data has {available}; refusing to report a number on fewer "
            "(pass --allow-partial to accept it)"
        )
    n = min(asked, available)
    dataset = ImageDataset(source, tokenizer.config.image_size, train=False)
    fid_method = default_fid_method()
    settings = {
        "protocol": PROTOCOL_VERSION, "task": "reconstruction", "tokens": ks if curve else k, "num_images": n, "batch_size": batch_size,
        "data": source.description, "tokenizer": tokenizer.identity(),
        "inception": inception.identity(), "precision": str(next(tokenizer.parameters()).dtype), "pixel_decoder_dtype": str(pixel_dtype),
    }
    n_chunks = math.ceil(n / batch_size)
    job = _job(out, settings, n_chunks, rank, world)
    device = tokenizer.device
    skipped: list[str] = []
    t0 = time.perf_counter()
    for c in tqdm(job.todo(), disable=not progress, desc="rFID", unit="batch"):
        items = []
        for i in range(c * batch_size, min((c + 1) * batch_size, n)):
            try:
                items.append(dataset.load(i, 0))
            except Exception as e:  # noqa: BLE001 - unreadable images are counted and named
                skipped.append(f"{source.records[i].name} ({type(e).__name__}: {e})")
        if not items:
            job.save(c, {"ids": np.zeros((0, k), np.int64)})  # done, nothing to merge
            continue
        job.save(c, reconstruction_batch(tokenizer, torch.stack(items).to(device), ks if curve else k, inception, pixel_dtype))
    job.note_skipped(skipped)
    merged = _merged(job, barrier)
    if merged is None:
        return None
    got = int(merged["ids"].shape[0])
    all_skipped = job.skipped()
    if got < asked and not allow_partial:
        raise EvaluationError(
            f"only {got} of {asked} images could be evaluated ({len(all_skipped)} unreadable, e.g. {all_skipped[:2]}); "
            "refusing to report (pass --allow-partial to accept it)"
        )
    if curve:
        rows = []
        for t in ks:
            row = summarize_reconstruction(prefix_arrays(merged, t), tokenizer.codebook_size, fid_method)
            rows.append({"tokens": t, "rfid": row.pop("rfid", None), **row})
        result = {k2: v for k2, v in rows[-1].items() if k2 != "tokens"}
        result["rate_curve"] = rows
        if target_psnr is not None:
            result["budget"] = budget_distribution(merged, ks, float(target_psnr))
    else:
        result = summarize_reconstruction(merged, tokenizer.codebook_size, fid_method)
    result = {"rfid": result.pop("rfid", None), **result}
    result["settings"] = {
        **settings,
        "crop": f"torchvision Resize({tokenizer.config.image_size}, bicubic, antialias) + CenterCrop, on PIL images",
        "num_images_asked": asked,
        "partial": got < asked,
        "skipped_files": all_skipped,
        "fid": "scipy sqrtm of sigma_real @ sigma_fake (TiTok evaluator)" if fid_method == "sqrtm" else "eigh (SciPy missing)",
        "inception_score": "one split over all reconstructions, eps 1e-16 (TiTok evaluator)",
        "processes": world,
        "date": _now(),
        "seconds": time.perf_counter() - t0,
    }
    write_json(out, result)
    if curve:
        _rate_plot(out.with_suffix(".png"), result["rate_curve"])
    return result


def _rate_plot(path: Path, rows: list[dict[str, Any]]) -> None:
    """PSNR, SSIM and rFID against the number of tokens (skipped without matplotlib)."""
    try:
        from .viz import _plt, _save

        plt = _plt()
    except ImportError:
        return
    keys = [k for k in ("psnr", "ssim", "rfid", "codebook_usage") if all(r.get(k) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot([r["tokens"] for r in rows], [r[key] for r in rows], marker="o")
        ax.set(xscale="log", xlabel="tokens kept", title=key)
        ax.set_xticks([r["tokens"] for r in rows], [str(r["tokens"]) for r in rows])
    _save(fig, path)


# ------------------------------------------------------------------------------------------- references
def load_reference(path: str | Path, inception: InceptionFeatures | None = None, need_activations: bool = True, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Read a reference batch (ADM layout: ``mu``, ``sigma``, ``arr_0`` images; or ``activations``).

    Activations for precision/recall come from the file's ``activations`` if present, else are computed
    from ``arr_0`` with ``inception`` and cached beside the file as ``<name>.<sha>.activations.npy``.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"reference file {path} does not exist")
    try:
        ref = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise EvaluationError(f"cannot read reference {path}: {e}") from None
    keys = set(ref.files)
    out: dict[str, np.ndarray] = {}
    if "activations" in keys:
        out["activations"] = ref["activations"]
    if {"mu", "sigma"} <= keys:
        out["mu"], out["sigma"] = ref["mu"], ref["sigma"]
    elif "activations" in out:
        out["mu"], out["sigma"] = feature_statistics(out["activations"])
    elif "arr_0" not in keys:
        raise EvaluationError(f"reference {path} has none of mu/sigma, activations or arr_0 (keys: {sorted(keys)})")
    if ("activations" not in out and need_activations) or "mu" not in out:
        if "arr_0" not in keys:
            raise EvaluationError(f"reference {path} has no activations and no arr_0 images to compute them from")
        if inception is None:
            raise EvaluationError("computing reference activations needs the Inception")
        tag = (inception.identity()["sha256"] or "default")[:12]
        cache = path.with_name(f"{path.name}.{tag}.activations.npy")
        if cache.exists():
            acts = np.load(cache, allow_pickle=False)
        else:
            imgs = ref["arr_0"]  # (N, H, W, 3) uint8
            feats = []
            for i in range(0, len(imgs), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(imgs[i : i + batch_size])).permute(0, 3, 1, 2)
                feats.append(inception(x)[0].cpu().numpy())
            acts = np.concatenate(feats)
            save_npy(cache, acts)
        out["activations"] = acts
        if "mu" not in out:
            out["mu"], out["sigma"] = feature_statistics(acts)
    return out


def make_reference(images: np.ndarray, inception: InceptionFeatures, out: str | Path, batch_size: int = 64) -> dict[str, Any]:
    """Write an ADM-layout reference batch (``arr_0``, ``mu``, ``sigma``, ``activations``) from uint8 NHWC images."""
    feats = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).permute(0, 3, 1, 2)
        feats.append(inception(x)[0].cpu().numpy())
    acts = np.concatenate(feats)
    mu, sigma = feature_statistics(acts)
    save_npz(out, arr_0=images, mu=mu, sigma=sigma, activations=acts)
    return {"num_images": int(len(images)), "inception": inception.identity()}


# ------------------------------------------------------------------------------------------- generation
def generation_labels(total: int, num_classes: int) -> torch.Tensor:
    """Class of every sample, in sample order: ``i mod num_classes`` (the official sampling script's
    ``list(range(C)) * per_class``), so any 5,000 consecutive samples of ImageNet hold every class 5 times."""
    return torch.arange(total) % num_classes


@torch.no_grad()
def evaluate_generation(
    generator: Any,
    tokenizer: Any,
    inception: InceptionFeatures,
    reference: str | Path,
    out: str | Path,
    num_samples: int | None = None,
    per_class: int = 50,
    batch_size: int = 32,
    seed: int = 0,
    sampling: SamplingConfig | dict[str, Any] | None = None,
    allow_partial: bool = False,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] | None = None,
    progress: bool = True,
    save_images: bool = False,
    autocast_dtype: torch.dtype | None = None,
    pixel_dtype: torch.dtype = torch.float32,
    save_samples: str | Path | None = None,
    compile: bool = False,
) -> dict[str, Any] | None:
    """gFID, precision/recall and (with logits) IS of ``per_class`` samples per class; writes ``out`` (JSON).

    ``compile``: sample and decode through :mod:`restok.compiled` (recorded in the settings: a compiled kernel's
    rounding may change a rare token, so a resume does not mix the two).

    ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs sampling and the tokenizer's transformer under autocast;
    ``pixel_dtype`` is the CNN pixel decoder's precision (float32 by default, as the official code).
    ``save_samples``: also write the scored images, in sample order, as an ADM sample batch ``.npz``.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    # the whole recipe is recorded: the generator's own, with what ``sampling`` changes
    sp = sampling if isinstance(sampling, SamplingConfig) else generator.generation_config.replace(**(sampling or {}))
    C = generator.config.num_classes
    total = num_samples if num_samples is not None else per_class * C
    if total < 1:
        raise EvaluationError(f"nothing to sample: {total} samples asked")
    labels_all = generation_labels(total, C)
    keep_images = save_images or save_samples is not None
    fid_method = default_fid_method()
    settings = {
        "protocol": PROTOCOL_VERSION, "task": "generation", "num_samples": total, "batch_size": batch_size, "seed": seed,
        "sampling": sp.to_dict(), "generator": generator.identity(), "tokenizer": tokenizer.identity(),
        "inception": inception.identity(), "precision": str(next(generator.parameters()).dtype),
        "autocast": None if autocast_dtype is None else str(autocast_dtype), "pixel_decoder_dtype": str(pixel_dtype),
        "save_images": keep_images, "compile": bool(compile),
    }
    n_chunks = math.ceil(total / batch_size)
    job = _job(out, settings, n_chunks, rank, world)
    device = generator.device
    t0 = time.perf_counter()
    gen_time = 0.0
    for c in tqdm(job.todo(), disable=not progress, desc="gFID samples", unit="batch"):
        labels = labels_all[c * batch_size : (c + 1) * batch_size].to(device)
        g = torch.Generator(device).manual_seed(derive_seed(seed, "chunk", c) % (2**63))
        t = time.perf_counter()
        with autocast_to(device, autocast_dtype):
            ids = generator.generate(labels, sp, generator=g, compile=compile)
            images = tokenizer.decode(ids, pixel_dtype, compile=compile)
        gen_time += time.perf_counter() - t
        u8 = (images * 255).clamp(0, 255).to(torch.uint8)  # official PNG conversion (truncation)
        feats, logits = inception(u8)
        arrays = {
            "features": feats.cpu().numpy(),
            "logits": logits.cpu().numpy() if logits is not None else np.zeros((len(labels), 0)),
            "labels": labels.cpu().numpy(),
        }
        if keep_images:
            arrays["images"] = u8.permute(0, 2, 3, 1).cpu().numpy()
        job.save(c, arrays)
    merged = _merged(job, barrier, skip=("images",))
    if merged is None:
        return None
    got = int(merged["features"].shape[0])
    if got < total and not allow_partial:
        raise EvaluationError(f"only {got} of {total} samples exist; refusing to report (pass --allow-partial)")
    if not np.array_equal(merged["labels"], labels_all[:got].numpy()):
        raise EvaluationError(f"the chunks in {job.work} are not in sample order; delete it and run again")
    ref = load_reference(reference, inception)
    mu, sigma = feature_statistics(merged["features"])
    result: dict[str, Any] = {"gfid": frechet_distance(mu, sigma, ref["mu"], ref["sigma"], method=fid_method)}  # ADM: (sample, ref)
    pr = precision_recall(ref["activations"], merged["features"], k=3)
    result.update(precision=pr["precision"], recall=pr["recall"], num_samples=got)
    if merged["logits"].shape[1] > 0:
        result["inception_score"], result["inception_score_std"] = inception_score(merged["logits"], ADM_IS_SPLIT)
    if save_samples is not None:
        chunks = (job.load(k)["images"] for k in range(n_chunks))
        write_sample_batch(save_samples, chunks, merged["labels"])
    result["settings"] = {
        **settings,
        "num_samples_asked": total,
        "per_class": total / C,
        "labels": LABEL_ORDER,
        "inception_score": f"ADM evaluator: mean (and std) over consecutive splits of {ADM_IS_SPLIT} in sample order"
                           + (f"; one split of {got} here" if got <= ADM_IS_SPLIT else ""),
        "fid": "scipy sqrtm of sigma_sample @ sigma_ref (ADM evaluator)" if fid_method == "sqrtm" else "eigh (SciPy missing)",
        "chunk_seeds": "derive_seed(seed, 'chunk', k) per batch k",
        "reference": {"path": str(Path(reference).resolve()), "num_images": int(ref["activations"].shape[0])},
        "samples_file": None if save_samples is None else str(Path(save_samples).resolve()),
        "processes": world,
        "date": _now(),
        "seconds": time.perf_counter() - t0,
        "sampling_seconds_this_process": gen_time,
    }
    write_json(out, result)
    return result
