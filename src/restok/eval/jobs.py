"""The evaluation commands as requests: what ``restok eval reconstruction|generation|search|reference|compare|check``
ask for, as keyword-only dataclasses, and one function per request that does the whole job over one
:class:`~restok.eval.context.EvalContext` -- this process of a launch, its device and FID Inception -- with the
metrics the request names. The command line only fills requests in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models.auto import load_generator
from ..runtime.precision import DTYPES
from ..runtime.requests import RequestError
from ..runtime.requests import field as field_name
from .compare import compare_over, entry_labels
from .context import EvalContext, EvalOptions
from .doctor import Findings, check_fid_inputs
from .generation import generate_and_score
from .metrics import LPIPSDistance, Metric, metric_class
from .reconstruction import reconstruct_dataset, reconstruction_metrics
from .references import make_reference, reference_images
from .search import MAX_SEARCH_POINTS, SearchGrid, search_over

__all__ = [
    "EvalOptions",
    "Inception",
    "Lpips",
    "ReconstructionRequest",
    "GenerationRequest",
    "SearchRequest",
    "ReferenceRequest",
    "CompareRequest",
    "CheckRequest",
    "run_reconstruction",
    "run_generation",
    "run_search",
    "run_reference",
    "run_compare",
    "run_check",
]


@dataclass(frozen=True, kw_only=True)
class Inception:
    """Which FID Inception, in which precision (fp64: as the official evaluator). The name of the options before they
    joined :class:`EvalOptions` (``device`` and ``progress`` went there too)."""

    weights: str | None = None
    dtype: str = "fp64"
    device: str = "auto"
    progress: bool = True

    def options(self, **more: Any) -> EvalOptions:
        """These settings as the evaluation's options."""
        return EvalOptions(
            inception_weights=self.weights,
            inception_dtype=self.dtype,
            device=self.device,
            progress=self.progress,
            **more,
        )


@dataclass(frozen=True, kw_only=True)
class Lpips:
    """LPIPS-VGG16 as a reconstruction metric: the VGG16 backbone (torchvision's ``vgg16-397923af.pth``; no wheel ships
    it, so offline it must be a local file) and the "lin" heads (default: the ``lpips`` wheel's, else downloaded)."""

    vgg_weights: str | None = None
    lin_weights: str | None = None

    def build(self, device: Any) -> Any:
        """The frozen network on ``device``."""
        from ..models.layers.perceptual import build_lpips

        where = f"{field_name('lpips_vgg')} vgg16-397923af.pth (torchvision's VGG16 weights file)"
        return build_lpips("vgg16", self.vgg_weights, self.lin_weights, vgg_option=where).to(device)

    def identity(self) -> dict[str, Any]:
        """The weights the network is built from."""
        from ..models.layers.perceptual import lpips_identity

        return lpips_identity("vgg16", self.vgg_weights, self.lin_weights)


def _metrics(lpips: Lpips | None, names: tuple[str, ...], task: str) -> list[Metric]:
    """The optional metrics a request names (LPIPS built on the job's device when it first scores)."""
    chosen: list[Metric] = [LPIPSDistance(spec=lpips)] if lpips is not None else []
    try:
        return chosen + [metric_class(name, task)() for name in names]
    except ValueError as e:
        raise RequestError(f"{field_name('metrics')}: {e}") from None


# ------------------------------------------------------------------------------------------- reconstruction
@dataclass(frozen=True, kw_only=True)
class ReconstructionRequest:
    """``restok eval reconstruction``: a tokenizer on images, at one prefix length, several, or all (the rate curve)."""

    tokenizer: str
    data: str
    out: Path
    tokens: int | str | tuple[int, ...] | None = None
    num_images: int | None = None
    target_psnr: float | None = None
    pixel_dtype: str = "fp32"
    lpips: Lpips | None = None
    metrics: tuple[str, ...] = ()  # optional metrics by name (kid)
    options: EvalOptions = field(default_factory=EvalOptions)


def run_reconstruction(req: ReconstructionRequest) -> dict[str, Any] | None:
    """rFID, PSNR, SSIM, codebook usage and entropy (and the metrics asked for) of the request's tokenizer; the result
    on the main process (None elsewhere)."""
    ctx = EvalContext(options=req.options, data=req.data, tokenizer=req.tokenizer)
    metrics = reconstruction_metrics(None, _metrics(req.lpips, req.metrics, "reconstruction"))
    pixel_dtype = DTYPES[req.pixel_dtype]
    return reconstruct_dataset(ctx, Path(req.out), req.tokens, req.num_images, metrics, pixel_dtype, req.target_psnr)


# ------------------------------------------------------------------------------------------- generation
@dataclass(frozen=True, kw_only=True)
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
    sampling: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = "fp32"
    pixel_dtype: str = "fp32"
    save_samples: str | None = None
    compile: bool = False
    metrics: tuple[str, ...] = ()
    options: EvalOptions = field(default_factory=EvalOptions)


def run_generation(req: GenerationRequest) -> dict[str, Any] | None:
    """gFID, IS, precision/recall (and the metrics asked for) of the request's generator (None on processes but the
    main one)."""
    ctx = EvalContext(options=req.options, tokenizer=req.tokenizer, generator=req.generator)
    metrics = _metrics(None, req.metrics, "generation")
    return generate_and_score(
        ctx,
        req.reference,
        Path(req.out),
        num_samples=req.num_samples,
        per_class=req.per_class,
        seed=req.seed,
        sampling=(req.sampling, req.changes),
        metrics=metrics,
        autocast_dtype=DTYPES[req.dtype],
        pixel_dtype=DTYPES[req.pixel_dtype],
        save_samples=req.save_samples,
        compile=req.compile,
    )


# ------------------------------------------------------------------------------------------- search
@dataclass(frozen=True, kw_only=True)
class SearchRequest:
    """``restok eval search``: a grid of recipes (axes from a YAML/JSON file, then ``axes`` changing it), each point a
    generation evaluation, optionally refined around the best."""

    generator: str
    tokenizer: str
    reference: str
    out: Path
    grid: str | None = None
    axes: Mapping[str, Any] = field(default_factory=dict)
    per_class: int = 5
    refine: bool = False
    refine_per_class: int | None = None
    seed: int = 0
    max_points: int = MAX_SEARCH_POINTS
    options: EvalOptions = field(default_factory=EvalOptions)


def run_search(req: SearchRequest, announce: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The guidance search of the request (None on processes but the main one); ``announce`` hears the plan and each
    point's result on the main process."""
    grid = SearchGrid.from_file(req.grid, **req.axes)
    grid.points(req.max_points)  # a grid too large, or with a bad value, fails before any model is loaded
    ctx = EvalContext(options=req.options, tokenizer=req.tokenizer, generator=req.generator)
    return search_over(
        ctx,
        req.reference,
        Path(req.out),
        grid,
        per_class=req.per_class,
        refine=req.refine,
        refine_per_class=req.refine_per_class,
        seed=req.seed,
        log=announce,
        max_points=req.max_points,
    )


# ------------------------------------------------------------------------------------------- reference
@dataclass(frozen=True, kw_only=True)
class ReferenceRequest:
    """``restok eval reference``: a reference batch from images (the first ``num_images`` through the evaluation
    transform at ``image_size``)."""

    data: str
    out: Path
    image_size: int = 256
    num_images: int | None = None
    options: EvalOptions = field(default_factory=EvalOptions)


def run_reference(req: ReferenceRequest) -> dict[str, Any]:
    """Write the reference batch (``arr_0``, ``mu``, ``sigma``, ``activations``); returns what it holds."""
    ctx = EvalContext(options=req.options, data=req.data)
    return make_reference(reference_images(ctx.source, req.image_size, req.num_images), ctx.inception, req.out)


# ------------------------------------------------------------------------------------------- compare
@dataclass(frozen=True, kw_only=True)
class CompareRequest:
    """``restok eval compare``: several tokenizers (any families) on one image set, every budget each supports."""

    tokenizers: tuple[str, ...]
    data: str
    out: Path
    num_images: int | None = None
    speed: bool = True
    speed_seconds: float = 60.0
    lpips: Lpips | None = None
    metrics: tuple[str, ...] = ()
    options: EvalOptions = field(default_factory=EvalOptions)


def run_compare(req: CompareRequest, announce: Callable[[str], None] = lambda _m: None) -> dict[str, Any] | None:
    """The comparison table of the request's tokenizers (None on processes but the main one)."""
    ctx = EvalContext(options=req.options, data=req.data)
    metrics = reconstruction_metrics(None, _metrics(req.lpips, req.metrics, "reconstruction"))
    labels = entry_labels(req.tokenizers)
    return compare_over(
        ctx,
        labels,
        Path(req.out),
        num_images=req.num_images,
        speed=req.speed,
        speed_seconds=req.speed_seconds,
        metrics=metrics,
        announce=announce,
    )


# ------------------------------------------------------------------------------------------- check (the FID doctor)
@dataclass(frozen=True, kw_only=True)
class CheckRequest:
    """``restok eval check``: a sample batch, a reference and result files to hold against the protocol (and the
    sampling recipe of a generator's card)."""

    samples: str | None = None
    reference: str | None = None
    results: tuple[str, ...] = ()
    reference_sha256: str | None = None
    generator: str | None = None


def run_check(req: CheckRequest) -> Findings:
    """Every protocol deviation found, one line each (none: clean)."""
    if req.samples is None and req.reference is None and not req.results:
        raise RequestError(
            f"nothing to check: give a sample batch, {field_name('reference')} or {field_name('results')}"
        )
    recipe = load_generator(req.generator).generation_config.to_dict() if req.generator else None
    return check_fid_inputs(req.samples, req.reference, list(req.results), req.reference_sha256, recipe)
