"""The evaluation commands as requests: what ``restok eval reconstruction|generation|search|reference`` ask for, in
plain values, and one function per request that does the whole job -- this process's models and FID Inception (under a
launcher, on its own GPU), the processes of the launch, then the protocol. The command line only fills requests in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.sources import open_image_source
from ..models.auto import load_pair, load_tokenizer
from ..runtime.precision import DTYPES
from ..runtime.processes import launched
from .compare import compare_tokenizers, entry_labels
from .generation import evaluate_generation
from .inception import load_inception
from .reconstruction import evaluate_reconstruction
from .references import make_reference, reference_images
from .search import MAX_SEARCH_POINTS, SearchGrid, search_guidance

__all__ = [
    "Inception",
    "Lpips",
    "ReconstructionRequest",
    "GenerationRequest",
    "SearchRequest",
    "ReferenceRequest",
    "run_reconstruction",
    "run_generation",
    "run_search",
    "run_reference",
    "CompareRequest",
    "run_compare",
]


@dataclass(frozen=True)
class Inception:
    """Which FID Inception, in which precision (fp64: as the official evaluator), and where the job runs."""

    weights: str | None = None
    dtype: str = "fp64"
    device: str = "auto"
    progress: bool = True


@dataclass(frozen=True)
class Lpips:
    """LPIPS-VGG16 as a reconstruction metric: the VGG16 backbone (torchvision's ``vgg16-397923af.pth``; no wheel ships
    it, so offline it must be a local file) and the "lin" heads (default: the ``lpips`` wheel's, else downloaded)."""

    vgg_weights: str | None = None
    lin_weights: str | None = None

    def build(self, device: Any) -> Any:
        """The frozen network on ``device``."""
        from ..models.layers.perceptual import build_lpips

        return build_lpips(
            "vgg16",
            self.vgg_weights,
            self.lin_weights,
            vgg_option="--lpips-vgg vgg16-397923af.pth (torchvision's VGG16 weights file)",
        ).to(device)


@dataclass(frozen=True)
class ReconstructionRequest:
    """``restok eval reconstruction``: a tokenizer on images, at one prefix length, several, or all (the rate curve)."""

    tokenizer: str
    data: str
    out: Path
    tokens: int | str | tuple[int, ...] | None = None
    num_images: int | None = None
    target_psnr: float | None = None
    batch_size: int = 32
    allow_partial: bool = False
    pixel_dtype: str = "fp32"
    inception: Inception = field(default_factory=Inception)
    lpips: Lpips | None = None


def run_reconstruction(req: ReconstructionRequest) -> dict[str, Any] | None:
    """rFID, PSNR, SSIM, codebook usage and entropy of the request's tokenizer (None on processes but the main one)."""
    source = open_image_source(req.data)  # a wrong data path fails before any model is loaded
    tok = load_tokenizer(req.tokenizer, device=req.inception.device)
    inception = load_inception(req.inception.weights, device=tok.device, dtype=req.inception.dtype)
    processes, _ = launched(req.inception.device, progress=req.inception.progress)
    return evaluate_reconstruction(
        tok,
        source,
        inception,
        req.out,
        tokens=req.tokens,
        num_images=req.num_images,
        target_psnr=req.target_psnr,
        batch_size=req.batch_size,
        allow_partial=req.allow_partial,
        processes=processes,
        pixel_dtype=DTYPES[req.pixel_dtype],
        lpips=None if req.lpips is None else req.lpips.build(tok.device),
    )


@dataclass(frozen=True)
class GenerationRequest:
    """``restok eval generation``: a generator's samples against a reference batch, under a recipe (a preset, a JSON
    file or None for the generator's own, with ``changes``)."""

    generator: str
    tokenizer: str
    reference: str
    out: Path
    num_samples: int | None = None
    per_class: int = 50
    seed: int = 0
    recipe: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    allow_partial: bool = False
    dtype: str = "fp32"
    pixel_dtype: str = "fp32"
    save_samples: str | None = None
    compile: bool = False
    inception: Inception = field(default_factory=Inception)


def run_generation(req: GenerationRequest) -> dict[str, Any] | None:
    """gFID, IS, precision/recall of the request's generator (None on processes but the main one)."""
    gen, tok = load_pair(req.tokenizer, req.generator, device=req.inception.device)
    inception = load_inception(req.inception.weights, device=gen.device, dtype=req.inception.dtype)
    processes, _ = launched(req.inception.device, progress=req.inception.progress)
    return evaluate_generation(
        gen,
        tok,
        inception,
        req.reference,
        req.out,
        num_samples=req.num_samples,
        per_class=req.per_class,
        batch_size=req.batch_size,
        seed=req.seed,
        sampling=(req.recipe, req.changes),
        allow_partial=req.allow_partial,
        processes=processes,
        autocast_dtype=DTYPES[req.dtype],
        pixel_dtype=DTYPES[req.pixel_dtype],
        save_samples=req.save_samples,
        compile=req.compile,
    )


@dataclass(frozen=True)
class SearchRequest:
    """``restok eval search``: a grid of recipes (axes from a YAML/JSON file, then ``axes`` changing it), each point a
    generation evaluation, optionally refined around the best."""

    generator: str
    tokenizer: str
    reference: str
    out: Path
    grid_file: str | None = None
    axes: Mapping[str, Any] = field(default_factory=dict)
    per_class: int = 5
    refine: bool = False
    refine_per_class: int | None = None
    seed: int = 0
    batch_size: int = 32
    inception: Inception = field(default_factory=Inception)
    max_points: int = MAX_SEARCH_POINTS


def run_search(req: SearchRequest, announce: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The guidance search of the request (None on processes but the main one); ``announce`` hears the plan and each
    point's result on the main process."""
    grid = SearchGrid.from_file(req.grid_file, **req.axes)
    points = grid.points(req.max_points)  # a grid too large, or with a bad value, fails before any model is loaded
    gen, tok = load_pair(req.tokenizer, req.generator, device=req.inception.device)
    inception = load_inception(req.inception.weights, device=gen.device, dtype=req.inception.dtype)
    processes, _ = launched(req.inception.device, progress=req.inception.progress)
    log = announce if processes.main else None
    if log is not None:
        refine = f", then a finer grid at {req.refine_per_class or 4 * req.per_class} per class" if req.refine else ""
        log(
            f"guidance search: {len(points)} point(s) x {req.per_class} samples per class x {gen.config.num_classes} "
            f"classes{refine}"
        )
    return search_guidance(
        gen,
        tok,
        inception,
        req.reference,
        req.out,
        grid,
        per_class=req.per_class,
        refine=req.refine,
        refine_per_class=req.refine_per_class,
        batch_size=req.batch_size,
        seed=req.seed,
        processes=processes,
        log=log,
        max_points=req.max_points,
    )


@dataclass(frozen=True)
class ReferenceRequest:
    """``restok eval reference``: a reference batch from images (the first ``num_images`` through the evaluation
    transform at ``image_size``)."""

    data: str
    out: Path
    image_size: int = 256
    num_images: int | None = None
    inception: Inception = field(default_factory=Inception)


def run_reference(req: ReferenceRequest) -> dict[str, Any]:
    """Write the reference batch (``arr_0``, ``mu``, ``sigma``, ``activations``); returns what it holds."""
    images = reference_images(open_image_source(req.data), req.image_size, req.num_images)
    inception = load_inception(
        req.inception.weights, device=launched(req.inception.device, progress=False)[1], dtype=req.inception.dtype
    )
    return make_reference(images, inception, req.out)


@dataclass(frozen=True)
class CompareRequest:
    """``restok eval compare``: several tokenizers (any families) on one image set, every budget each supports."""

    tokenizers: tuple[str, ...]
    data: str
    out: Path
    num_images: int | None = None
    batch_size: int = 32
    allow_partial: bool = False
    speed: bool = True
    inception: Inception = field(default_factory=Inception)
    lpips: Lpips | None = None


def run_compare(req: CompareRequest, announce: Callable[[str], None] = lambda _m: None) -> dict[str, Any] | None:
    """The comparison table of the request's tokenizers (None on processes but the main one)."""
    source = open_image_source(req.data)  # a wrong data path fails before any model is loaded
    processes, device = launched(req.inception.device, progress=req.inception.progress)
    inception = load_inception(req.inception.weights, device=device, dtype=req.inception.dtype)
    return compare_tokenizers(
        entry_labels(req.tokenizers),
        lambda src: load_tokenizer(src, device=req.inception.device),
        source,
        inception,
        req.out,
        num_images=req.num_images,
        batch_size=req.batch_size,
        allow_partial=req.allow_partial,
        processes=processes,
        speed=req.speed,
        announce=announce,
        lpips=None if req.lpips is None else req.lpips.build(device),
    )
