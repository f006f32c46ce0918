"""The FID doctor (``restok eval check``): names every deviation from the generation protocol that can be seen in a
sample batch, a reference batch and result files -- the causes behind most "I cannot reproduce the FID" reports.

What it looks at (each finding is one line):

* the samples (an ADM ``.npz``, ``arr_0`` uint8 (N, H, W, 3) with optional ``labels``/``arr_1``, or a folder of images,
  one sub-folder per class when labelled): fewer than 50,000; classes not balanced, or not in the official order
  (sample i has class i mod C); byte-identical images (the same seed reused); not 8-bit RGB; another size than the
  reference's (or 256); JPEG files (lossy: the protocol scores PNG or npz pixels);
* the reference: its statistics' SHA-256 against ``--reference-sha256`` and against what a result recorded;
* result JSONs (restok's, or another evaluator's): another protocol version or evaluator, another FID Inception than
  another result's, a sampling recipe other than the generator's card (``--generator``), and different Pillow, torch
  or numpy versions between two results (Pillow's bicubic resize changed between 12.x and 13.x: 61 of 320
  natural-image crops moved by 1-6 grey levels).

The samples are streamed (one chunk of images in memory), so a 50,000-image batch is checked in constant memory.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.images import MAX_IMAGE_PIXELS
from ..runtime.inputs import npz_headers, read_json_input, read_npz
from .protocol import PROTOCOL_VERSION, EvaluationError
from .references import statistics_sha256

__all__ = ["ADM_NUM_SAMPLES", "Findings", "check_fid_inputs", "iter_npz_images"]

ADM_NUM_SAMPLES = 50_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_CHUNK = 256


@dataclass
class Findings:
    """The deviations found, one line each, and what was looked at."""

    lines: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        """One deviation."""
        self.lines.append(line)


# ------------------------------------------------------------------------------------------- samples
def _npz_member(zf: zipfile.ZipFile, name: str) -> str | None:
    return next((m for m in (f"{name}.npy", name) if m in zf.namelist()), None)


def _open_arr0(path: Path) -> tuple[zipfile.ZipFile, Any, tuple[int, ...], np.dtype]:
    """The archive, its open ``arr_0`` member past the header, the array's shape and dtype (closed again on error)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise EvaluationError(f"{path} is not a readable .npz archive ({type(e).__name__})") from None
    try:
        member = _npz_member(zf, "arr_0")
        if member is None:
            raise EvaluationError(f"{path} has no arr_0 (an ADM sample batch holds its images there)")
        f = zf.open(member)
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran or len(shape) != 4:
            raise EvaluationError(f"{path}: arr_0 must be a C-ordered (N, H, W, C) array, got shape {shape}")
        if dtype.hasobject or shape[1] * shape[2] > MAX_IMAGE_PIXELS or shape[3] > 4:
            raise EvaluationError(
                f"{path}: arr_0's header declares images of {shape[1]} x {shape[2]} x {shape[3]} {dtype}, more than "
                f"the {MAX_IMAGE_PIXELS:,} pixels (and 4 channels) an image may have; nothing was read"
            )
        return zf, f, tuple(shape), dtype
    except BaseException:
        zf.close()
        raise


def npz_image_shape(path: Path) -> tuple[int, ...]:
    """``arr_0``'s shape, read from the header alone."""
    zf, f, shape, _ = _open_arr0(path)
    f.close()
    zf.close()
    return shape


def iter_npz_images(path: Path, chunk: int = _CHUNK) -> tuple[tuple[int, ...], np.dtype, Iterator[np.ndarray]]:
    """``arr_0``'s shape and dtype, and its images in chunks, read from the archive without loading it whole (the
    archive is closed when the chunks are exhausted)."""
    zf, f, shape, dtype = _open_arr0(path)
    per = int(np.prod(shape[1:])) * dtype.itemsize

    def chunks() -> Iterator[np.ndarray]:
        with zf, f:
            left = shape[0]
            while left:
                n = min(chunk, left)
                yield np.frombuffer(f.read(n * per), dtype=dtype).reshape(n, *shape[1:])
                left -= n

    return shape, dtype, chunks()


def _npz_labels(path: Path, n: int) -> np.ndarray | None:
    """The batch's labels (``labels``, ``arr_1`` or ``y``), their header checked against the image count first."""
    headers = npz_headers(path, "sample batch", max_elements=None)
    for key in ("labels", "arr_1", "y"):
        if key in headers:
            h = headers[key]
            if h.size != n or h.dtype.kind not in "iub":
                raise EvaluationError(
                    f"{path}: its {key!r} array is {h.shape} {h.dtype}, not one integer label per image ({n}); nothing "
                    "was read"
                )
            return read_npz(path, "sample batch", keys=(key,))[key].reshape(-1)
    return None


def _folder_images(path: Path) -> tuple[list[Path], np.ndarray | None]:
    """The image files (sorted) and, with one sub-folder per class, their class index (sorted sub-folder order)."""
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise EvaluationError(f"no images in {path}")
    parents = sorted({p.parent for p in files})
    if len(parents) > 1 and all(p.parent == path for p in parents):
        index = {p: i for i, p in enumerate(parents)}
        return files, np.array([index[p.parent] for p in files])
    return files, None


def _check_pixels(images: Iterator[np.ndarray], found: Findings) -> tuple[int, dict[bytes, int]]:
    """Count images and byte-identical repeats (first index of each repeated image)."""
    seen: dict[bytes, int] = {}
    repeats: list[tuple[int, int]] = []
    n = 0
    for chunk in images:
        for img in chunk:
            h = hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest()
            if h in seen:
                repeats.append((n, seen[h]))
            else:
                seen[h] = n
            n += 1
    if repeats:
        i, j = repeats[0]
        found.add(
            f"duplicates: {len(repeats)} images repeat an earlier one byte for byte (e.g. sample {i} == sample {j}): "
            "the same seed reused for the same class? FID and recall are then biased"
        )
    return n, seen


def _check_labels(labels: np.ndarray | None, n: int, found: Findings, ordered: bool) -> None:
    """Balanced classes; in an ordered batch, sample i of class i mod C."""
    if labels is None:
        found.checked.append("classes: no labels in the batch (not checked)")
        return
    if len(labels) != n:
        found.add(f"labels: {len(labels)} labels for {n} images")
        return
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() != counts.max():
        found.add(
            f"classes: not balanced ({len(classes)} classes, {counts.min()} to {counts.max()} samples each; the "
            "protocol "
            f"draws the same number per class)"
        )
    C = len(classes)
    if ordered and counts.min() == counts.max() and not np.array_equal(labels, np.arange(n) % C):
        first = int(np.flatnonzero(labels != np.arange(n) % C)[0])
        found.add(
            f"classes: not in the official order (sample i has class i mod {C}); sample {first} has class "
            f"{labels[first]}"
        )
    found.checked.append(f"classes: {C} classes")


def check_samples(path: Path, found: Findings, size: int | None) -> tuple[int, int]:
    """Every check of a sample batch (``.npz`` or folder); returns (count, image side)."""
    if path.is_dir():
        return _check_folder(path, found, size)
    npz_headers(path, "sample batch", max_elements=None)  # every member's header against its bytes, nothing read
    shape, dtype, images = iter_npz_images(path)
    if dtype != np.uint8:
        found.add(f"pixels: arr_0 is {dtype}, not 8-bit (uint8): scores of float or 16-bit samples are not comparable")
    if shape[3] != 3:
        found.add(f"pixels: {shape[3]} channels, not RGB")
    _check_size(shape[1], shape[2], size, found)
    n, _ = _check_pixels(images, found)
    _check_labels(_npz_labels(path, n), n, found, ordered=True)
    return n, shape[1]


def _check_size(h: int, w: int, size: int | None, found: Findings) -> None:
    want = size or 256
    if (h, w) != (want, want):
        found.add(f"size: samples are {w}x{h}, the reference's (or the protocol's) is {want}x{want}")


def _check_folder(path: Path, found: Findings, size: int | None) -> tuple[int, int]:
    from PIL import Image

    files, labels = _folder_images(path)
    jpeg, modes, sizes = [], {}, {}

    bad: list[str] = []
    good: list[int] = []

    def images() -> Iterator[np.ndarray]:
        for i, f in enumerate(files):
            try:
                with Image.open(f) as im:
                    if im.format == "JPEG":
                        jpeg.append(f.name)
                    pixels = np.asarray(im)[None]
                    modes[im.mode] = modes.get(im.mode, 0) + 1
                    sizes[im.size] = sizes.get(im.size, 0) + 1
            except Exception as e:  # noqa: BLE001 - an unreadable sample is a finding, not the end of the check
                bad.append(f"{f.name} ({type(e).__name__})")
                continue
            good.append(i)
            yield pixels

    n, _ = _check_pixels(images(), found)
    if bad:
        found.add(
            f"unreadable: {len(bad)} sample file(s) cannot be decoded (e.g. {bad[0]}): a killed or failed sampler?"
        )
    if not sizes:
        raise EvaluationError(f"no readable images in {path}")
    if jpeg:
        found.add(
            f"format: {len(jpeg)} JPEG files (e.g. {jpeg[0]}): lossy compression changes FID; save samples as PNG or "
            "npz"
        )
    if set(modes) - {"RGB"}:
        found.add(f"pixels: image modes {sorted(modes)}; the protocol scores 8-bit RGB")
    (w, h), _ = max(sizes.items(), key=lambda kv: kv[1])
    if len(sizes) > 1:
        found.add(f"size: {len(sizes)} different image sizes ({sorted(sizes)[:3]}...)")
    _check_size(h, w, size, found)
    _check_labels(None if labels is None else labels[good], n, found, ordered=False)
    return n, h


# ------------------------------------------------------------------------------------------- reference
def _statistics_findings(name: str, mu: np.ndarray, sigma: np.ndarray) -> list[str]:
    """What is wrong with a reference's FID statistics: shapes that do not fit, values that are not finite, a
    covariance that is not symmetric."""
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        return [
            f"reference: {name}'s statistics do not fit: mu is {mu.shape} and sigma {sigma.shape}; sigma must be (D, "
            "D) "
            "for a mu of D values -- not the statistics of an Inception"
        ]
    found = []
    for key, v in (("mu", mu), ("sigma", sigma)):
        bad = int((~np.isfinite(v)).sum()) if v.dtype.kind == "f" else 0
        if bad:
            found.append(f"reference: {name}'s {key} holds {bad} NaN or infinite value(s); every FID against it is NaN")
    if not found and not np.allclose(sigma, sigma.T, rtol=1e-5, atol=1e-8):
        found.append(f"reference: {name}'s sigma is not symmetric: not a covariance")
    return found


def check_reference(path: Path, found: Findings, expected_sha: str | None) -> tuple[str, int | None]:
    """The reference's statistics checked (shapes, finite, symmetric) and their SHA-256 against the one named; its
    image side (None without images)."""
    headers = npz_headers(path, "reference batch", max_elements=None)
    if not {"mu", "sigma"} <= set(headers):
        raise EvaluationError(f"reference {path} has no mu/sigma statistics (keys: {sorted(headers)})")
    stats = read_npz(path, "reference batch", keys=("mu", "sigma"))
    mu, sigma = np.asarray(stats["mu"]), np.asarray(stats["sigma"])
    for line in _statistics_findings(path.name, mu, sigma):
        found.add(line)
    sha = statistics_sha256(mu, sigma)
    side = npz_image_shape(path)[1] if "arr_0" in headers else None
    if expected_sha and sha != expected_sha.lower():
        found.add(
            f"reference: {path.name}'s statistics have SHA-256 {sha[:16]}..., not the named {expected_sha[:16]}...: "
            "another reference batch"
        )
    found.checked.append(f"reference statistics sha256 {sha}")
    return sha, side


# ------------------------------------------------------------------------------------------- results
def _read_result(path: Path) -> dict[str, Any]:
    try:
        data = read_json_input(path, "result file")
    except (OSError, ValueError) as e:
        raise EvaluationError(f"cannot read result {path}: {e}") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"result {path} is not a JSON object")
    return data


def _check_one_result(
    name: str, res: dict[str, Any], found: Findings, ref_sha: str | None, recipe: dict[str, Any] | None
) -> None:
    s = res.get("settings") if isinstance(res.get("settings"), dict) else None
    if s is None or "protocol" not in s:
        found.add(
            f"{name}: not a restok result (no settings.protocol; keys {sorted(res)[:6]}): another evaluator "
            "(clean-fid, "
            "torchmetrics, torch-fidelity...) computes FID differently and is not comparable"
        )
        return
    if s["protocol"] != PROTOCOL_VERSION:
        found.add(f"{name}: protocol {s['protocol']}, this restok's is {PROTOCOL_VERSION}")
    n = s.get("num_samples") or res.get("num_samples")
    if s.get("task") == "generation" and isinstance(n, int) and n < ADM_NUM_SAMPLES:
        found.add(f"{name}: scored {n} samples, the protocol {ADM_NUM_SAMPLES}")
    got = (s.get("reference") or {}).get("statistics_sha256")
    if ref_sha and got and got != ref_sha:
        found.add(
            f"{name}: scored against another reference batch (statistics SHA-256 {got[:16]}..., given "
            f"{ref_sha[:16]}...)"
        )
    if recipe is not None and s.get("sampling") is not None and s["sampling"] != recipe:
        used = s["sampling"]
        diff = sorted(k for k in set(recipe) | set(used) if recipe.get(k) != used.get(k))
        pairs = ", ".join(f"{k}={used.get(k)} vs {recipe.get(k)}" for k in diff)
        found.add(f"{name}: sampling recipe differs from the generator's card in {diff} ({pairs})")


def _check_result_pair(names: Sequence[str], results: Sequence[dict[str, Any]], found: Findings) -> None:
    """What two restok results must share to be compared: the Inception and the versions."""
    settings = [r.get("settings") or {} for r in results]
    for i in range(1, len(results)):
        a, b = settings[0], settings[i]
        ia, ib = a.get("inception") or {}, b.get("inception") or {}
        if ia and ib and (ia.get("sha256"), ia.get("backend")) != (ib.get("sha256"), ib.get("backend")):
            found.add(
                f"{names[0]} and {names[i]}: different FID Inception weights ({ia.get('backend')} "
                f"{str(ia.get('sha256'))[:12]} "
                f"vs {ib.get('backend')} {str(ib.get('sha256'))[:12]})"
            )
        va, vb = a.get("versions"), b.get("versions")
        if not (va and vb):
            found.add(
                f"{names[0]} and {names[i]}: {'one does' if va or vb else 'they do'} not record package versions: "
                "cannot tell whether resizing or arithmetic changed"
            )
            continue
        for pkg in ("pillow", "torch", "numpy"):
            if va.get(pkg) != vb.get(pkg):
                why = (
                    " (its bicubic resize changed between 12.x and 13.x: crops move by 1-6 grey levels)"
                    if pkg == "pillow"
                    else ""
                )
                found.add(f"{names[0]} and {names[i]}: {pkg} {va.get(pkg)} vs {vb.get(pkg)}{why}")


# ------------------------------------------------------------------------------------------- all
def check_fid_inputs(
    samples: str | Path | None,
    reference: str | Path | None = None,
    results: Sequence[str | Path] = (),
    reference_sha256: str | None = None,
    recipe: dict[str, Any] | None = None,
) -> Findings:
    """Every deviation visible in the samples, the reference and the results (any may be left out)."""
    found = Findings()
    ref_sha, side = (None, None)
    if reference is not None:
        ref_sha, side = check_reference(Path(reference), found, reference_sha256)
    if samples is not None:
        n, _ = check_samples(Path(samples), found, side)
        if n < ADM_NUM_SAMPLES:
            found.add(
                f"count: {n} samples; the protocol (ADM evaluator) uses {ADM_NUM_SAMPLES}: FID is biased upward at "
                "fewer "
                "(quote the count beside the number)"
            )
        found.checked.append(f"samples: {n}")
    loaded = [(Path(r).name, _read_result(Path(r))) for r in results]
    for name, res in loaded:
        _check_one_result(name, res, found, ref_sha, recipe)
    restok_results = [(n, r) for n, r in loaded if isinstance(r.get("settings"), dict) and "protocol" in r["settings"]]
    if len(restok_results) > 1:
        _check_result_pair([n for n, _ in restok_results], [r for _, r in restok_results], found)
    return found
