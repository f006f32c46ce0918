"""Evaluation metrics (paper Sec. 5, Tab. 1; Eq. 5-6), one module each, registered by name.

:mod:`.base` says what a metric is (:class:`~.base.Metric`: what it consumes, the per-image arrays it keeps, how it
computes its numbers from them). The metrics: :mod:`.fid` (rFID / gFID), :mod:`.psnr`, :mod:`.ssim`, :mod:`.codebook`
(usage and entropy H_C), :mod:`.lpips` (LPIPS-VGG16), :mod:`.inception_score`, :mod:`.precision_recall` and :mod:`.kid`
(Kernel Inception Distance). The protocols (:mod:`restok.eval.reconstruction`, :mod:`restok.eval.generation`)
assemble the ones they serve; the optional ones (``lpips``, ``kid``) are asked for by name. The pure functions of
each module (``frechet_distance``, ``psnr``, ...) are importable from here too.
"""

from .base import (
    GENERATION,
    INPUTS,
    RECONSTRUCTION,
    ImagePair,
    Metric,
    MetricError,
    metric_class,
    metric_classes,
    register_metric,
)

# isort: off
# The registry's order is the order of these imports; a result lists numbers by each metric's ``position``.
from .fid import FID, default_fid_method, feature_statistics, frechet_distance
from .psnr import PSNR, psnr
from .ssim import SSIM, ssim
from .codebook import CodebookUsage, codebook_stats, entropy_bits
from .precision_recall import PrecisionRecall, precision_recall
from .lpips import LPIPSDistance
from .inception_score import ADM_IS_SPLIT, InceptionScore, inception_score
from .kid import KID, kernel_inception_distance, polynomial_mmd2

# isort: on

__all__ = [
    "Metric",
    "ImagePair",
    "MetricError",
    "register_metric",
    "metric_class",
    "metric_classes",
    "RECONSTRUCTION",
    "GENERATION",
    "INPUTS",
    "FID",
    "PSNR",
    "SSIM",
    "CodebookUsage",
    "PrecisionRecall",
    "LPIPSDistance",
    "InceptionScore",
    "KID",
    "codebook_stats",
    "entropy_bits",
    "frechet_distance",
    "feature_statistics",
    "inception_score",
    "default_fid_method",
    "ADM_IS_SPLIT",
    "precision_recall",
    "psnr",
    "ssim",
    "kernel_inception_distance",
    "polynomial_mmd2",
]
