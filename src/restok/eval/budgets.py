"""Token budgets: per image, the shortest nested prefix that meets a quality target (PSNR, SSIM or LPIPS), and
the distribution of such budgets over a data set -- what the nested tokens of ResTok (Sec. 3.3-3.4) make possible.

Works with any tokenizer whose prefixes decode (``prefix_lengths``, ``encode``, ``decode``); reconstructions are
scored as the evaluation protocol scores them (8-bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .metrics import PSNR, SSIM, LPIPSDistance

if TYPE_CHECKING:
    from ..models.tokenizer import Tokenizer

__all__ = [
    "AdaptiveCodes",
    "encode_adaptive",
    "budget_distribution",
    "TARGET_RANGES",
    "QUALITY_METRICS",
    "check_target",
]

# The per-image metrics a budget can target (each scores an image, says which way is better and what a target may be).
QUALITY_METRICS = {m.name: m for m in (PSNR, SSIM, LPIPSDistance)}
# What a quality target may be (the command line's --target-psnr/--target-ssim use the same ranges), each metric's own.
TARGET_RANGES = {name: m.target_range for name, m in QUALITY_METRICS.items()}


def check_target(metric: str, value: Any) -> float:
    """A quality target as a float in its metric's range, or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{metric} target must be a number, got {value!r}")
    TARGET_RANGES[metric].check(float(value), f"the {metric} target")
    return float(value)


@dataclass
class AdaptiveCodes:
    """Result of :func:`encode_adaptive`: full ids and, per image, the chosen prefix length."""

    ids: torch.Tensor  # (B, L) every token; image b uses ids[b, :lengths[b]]
    lengths: torch.Tensor  # (B,) chosen prefix lengths
    quality: torch.Tensor  # (B,) the metric at the chosen length
    met: torch.Tensor  # (B,) bool: whether the target was reached within the cap
    metric: str
    target: float
    prefix_lengths: tuple[int, ...]  # the lengths that were tried
    table: torch.Tensor  # (B, n) the metric of every tried length

    def ids_of(self, b: int) -> torch.Tensor:
        """The ids image ``b`` keeps, (lengths[b],)."""
        return self.ids[b, : int(self.lengths[b])]


def _target(psnr: float | None, ssim: float | None, lpips: float | None, lpips_net: Any) -> tuple[str, float]:
    """The one metric asked for and its target, or a ValueError."""
    given = {"psnr": psnr, "ssim": ssim, "lpips": lpips}
    chosen = [k for k, v in given.items() if v is not None]
    if len(chosen) != 1:
        raise ValueError(f"give exactly one target (psnr=, ssim= or lpips=), got {chosen or 'none'}")
    metric = chosen[0]
    if metric == "lpips" and lpips_net is None:
        raise ValueError(
            "an lpips target needs lpips_net= (restok.train.backbones.build_lpips with local VGG16 weights)"
        )
    return metric, check_target(metric, given[metric])


@torch.no_grad()
def encode_adaptive(
    tokenizer: Tokenizer,
    images: torch.Tensor,
    *,
    psnr: float | None = None,
    ssim: float | None = None,
    lpips: float | None = None,
    lpips_net: torch.nn.Module | None = None,
    max_tokens: int | None = None,
) -> AdaptiveCodes:
    """Per image, the shortest allowed prefix whose reconstruction meets the target: ``psnr`` (dB, at least), ``ssim``
    (at least) or ``lpips`` (at most; pass ``lpips_net``, e.g. ``restok.train.backbones.build_lpips("vgg16",
    vgg_weights=..., lin_weights=...)``, as no wheel ships the VGG16 weights), never longer than ``max_tokens``.

    One encode, then one batched decode per allowed prefix length (every image at once); reconstructions are scored
    as the evaluation protocol scores them (8-bit). An image that no prefix up to the cap satisfies gets the cap,
    with ``met`` False.
    """
    metric, target = _target(psnr, ssim, lpips, lpips_net)
    cap = tokenizer.num_tokens if max_tokens is None else max_tokens
    if isinstance(cap, bool) or not isinstance(cap, int) or cap not in tokenizer.prefix_lengths:
        raise ValueError(
            f"max_tokens={max_tokens!r} is not a prefix length of the tokenizer; choose one of "
            f"{list(tokenizer.prefix_lengths)}"
        )
    lengths = [k for k in tokenizer.prefix_lengths if k <= cap]
    ids = tokenizer.encode(images)  # (B, L), the images validated there
    x = images.float().to(ids.device)  # (B, 3, H, W)
    scorer = LPIPSDistance(lpips_net) if metric == "lpips" else QUALITY_METRICS[metric]()
    scores = []
    for k in lengths:
        rec = torch.round(tokenizer.decode(ids[:, :k]) * 255) / 255  # (B, 3, H, W), 8-bit as in evaluation
        scores.append(scorer.score(rec, x))  # (B,)
    table = torch.stack(scores, dim=1).cpu()  # (B, n): quality of every prefix
    ok = table >= target if scorer.higher_is_better else table <= target  # (B, n)
    met = ok.any(dim=1)  # (B,)
    first = torch.where(met, ok.float().argmax(dim=1), torch.full_like(met, len(lengths) - 1, dtype=torch.long))  # (B,)
    chosen_len = torch.tensor(lengths)[first]  # (B,)
    quality = table[torch.arange(len(first)), first]  # (B,)
    return AdaptiveCodes(ids.cpu(), chosen_len, quality, met, metric, target, tuple(lengths), table)


def budget_distribution(arrays: dict[str, np.ndarray], lengths: Sequence[int], target_psnr: float) -> dict[str, Any]:
    """For a PSNR target, each image's shortest prefix that meets it (the longest when none does): how many images
    chose each length, the mean tokens per image and the fraction that met the target. ``arrays`` holds the rate
    curve's per-image ``psnr@k``."""
    check_target("psnr", target_psnr)
    table = np.stack([arrays[f"psnr@{k}"] for k in lengths], axis=1)  # (N, n)
    ok = table >= target_psnr
    met = ok.any(axis=1)
    chosen = np.where(met, np.asarray(lengths)[ok.argmax(axis=1)], lengths[-1])
    return {
        "target_psnr": target_psnr,
        "lengths": {int(k): int((chosen == k).sum()) for k in lengths},
        "mean_tokens": float(chosen.mean()),
        "met": float(met.mean()),
    }
