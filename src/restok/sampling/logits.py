"""From logits to tokens: temperature, top-k and top-p (nucleus) filtering, and the draw.

Axes: N rows (samples x positions), V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["filter_logits", "sample_from_logits"]


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Top-k, then top-p (nucleus) filtering of (N, V) logits; removed entries become -inf.

    ``top_k = 0`` and ``top_p = 1.0`` switch the filters off. Nucleus keeps the smallest prefix of the
    sorted distribution whose cumulative probability exceeds ``top_p``, and always the top token.
    """
    if top_k > 0:
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k)[0][..., -1, None]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))  # not logits[mask] = ...: that syncs on CUDA
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)  # (N, V) each
        cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)  # (N, V)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # shift right: keep the token that crosses top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return logits


def sample_from_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one id per row of (N, V) logits after temperature and filtering -> (N,) int64."""
    logits = logits / max(temperature, 1e-5)
    if top_k > 0 or top_p < 1.0:
        logits = filter_logits(logits, top_k, top_p)
    probs = F.softmax(logits, dim=-1)  # (N, V)
    try:
        return torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]  # (N,)
    except RuntimeError as e:
        if "probability tensor" not in str(e):
            raise
        raise ValueError(
            "the generator's next-token probabilities are NaN or infinite: its weights overflow at this "
            "precision, or are damaged; nothing was sampled"
        ) from None
