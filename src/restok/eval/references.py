"""Reference and sample batches in the ADM evaluator's layout (``.npz``: ``arr_0`` uint8 NHWC images, ``mu``/``sigma``,
``activations``, ``labels``): reading a reference (computing its activations with the FID Inception when it has
none), making one from images, and writing the scored samples for the ADM TensorFlow evaluator."""

from __future__ import annotations

import hashlib
import itertools
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.datasets import ImageDataset
from ..data.records import ImageSource
from ..runtime.files import atomic_write, save_npy, save_npz
from ..runtime.inputs import npz_headers, read_npy, read_npz, regular_file
from .inception import InceptionFeatures
from .metrics import feature_statistics
from .protocol import EvaluationError

__all__ = [
    "load_reference",
    "make_reference",
    "reference_images",
    "image_features",
    "write_sample_batch",
    "statistics_sha256",
]


def image_features(images: np.ndarray, inception: InceptionFeatures, batch_size: int = 64) -> np.ndarray:
    """Inception pool features (N, F) of uint8 NHWC images, in batches."""
    feats = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).permute(0, 3, 1, 2)  # (b, 3, H, W) uint8
        feats.append(inception(x)[0].cpu().numpy())
    return np.concatenate(feats)


def reference_images(source: ImageSource, image_size: int, num_images: int | None = None) -> np.ndarray:
    """The first ``num_images`` images of a source through the evaluation transform, as uint8 NHWC (a reference
    batch)."""
    ds = ImageDataset(source, image_size, train=False)
    n = min(len(ds), num_images or len(ds))
    return np.stack([(ds.load(i, 0) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy() for i in range(n)])


def statistics_sha256(mu: np.ndarray, sigma: np.ndarray) -> str:
    """SHA-256 of a reference's FID statistics (mu then sigma as little-endian float64): names the reference batch
    whatever archive holds it."""
    h = hashlib.sha256()
    for a in (mu, sigma):
        h.update(np.ascontiguousarray(np.asarray(a, dtype="<f8")).tobytes())
    return h.hexdigest()


def load_reference(
    path: str | Path, inception: InceptionFeatures | None = None, need_activations: bool = True, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Read a reference batch (ADM layout: ``mu``, ``sigma``, ``arr_0`` images; or ``activations``).

    Activations for precision/recall come from the file's ``activations`` if present, else are computed
    from ``arr_0`` with ``inception`` and cached beside the file as ``<name>.<sha>.activations.npy``.
    """
    try:
        path = regular_file(path, "reference file")
        keys = set(npz_headers(path, "reference file"))  # every array's header checked before any is read
        ref = read_npz(path, "reference file", keys=tuple(k for k in ("activations", "mu", "sigma") if k in keys))
    except (OSError, ValueError) as e:
        raise EvaluationError(str(e) if str(path) in str(e) else f"cannot read reference {path}: {e}") from None
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
            acts = read_npy(cache, "cached reference activations")
        else:
            imgs = read_npz(path, "reference file", keys=("arr_0",))["arr_0"]  # (N, H, W, 3) uint8
            acts = image_features(imgs, inception, batch_size)
            save_npy(cache, acts)
        out["activations"] = acts
        if "mu" not in out:
            out["mu"], out["sigma"] = feature_statistics(acts)
    for key, value in out.items():  # a NaN here would become a NaN gFID, reported as a result
        if not np.isfinite(np.asarray(value, dtype=np.float64)).all():
            raise EvaluationError(f"reference {path}: '{key}' holds NaN or infinite values; the file is damaged")
    mu, sigma = np.asarray(out["mu"]), np.asarray(out["sigma"])
    acts = np.asarray(out.get("activations", out["mu"][None]))
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)) or acts.ndim != 2 or acts.shape[1] != len(mu):
        raise EvaluationError(
            f"reference {path}: mu {mu.shape}, sigma {sigma.shape} and activations {acts.shape} do not fit (sigma must "
            "be (D, D) and activations (N, D) for a mu of D values)"
        )
    return out


def make_reference(
    images: np.ndarray, inception: InceptionFeatures, out: str | Path, batch_size: int = 64
) -> dict[str, Any]:
    """Write an ADM-layout reference batch (``arr_0``, ``mu``, ``sigma``, ``activations``) from uint8 NHWC images."""
    acts = image_features(images, inception, batch_size)
    mu, sigma = feature_statistics(acts)
    save_npz(out, arr_0=images, mu=mu, sigma=sigma, activations=acts)
    return {"num_images": int(len(images)), "inception": inception.identity()}


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
                np.lib.format.write_array_header_2_0(
                    f, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
                )
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
