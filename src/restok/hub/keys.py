"""The one check of a checkpoint's tensors against a model's own: names, shapes, types and finiteness."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .files import CheckpointError

__all__ = ["check_state_dict"]


def check_state_dict(
    own: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
    ignore_prefixes: tuple[str, ...],
    source: str,
    what: str,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Match a checkpoint to a model's own state dict: keys under ``ignore_prefixes`` that the model lacks are
    dropped; any missing, unexpected or mis-shaped key is an error naming them all. Returns the tensors, cast to the
    model's dtypes, and the dropped names."""
    dropped = [k for k in state_dict if k.startswith(ignore_prefixes) and k not in own]
    sd = {k: v for k, v in state_dict.items() if k not in dropped}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(sd) & set(own)
        if sd[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(f"checkpoint {source} does not match {what} -- {'; '.join(parts)}")
    bad = [k for k, v in sd.items() if own[k].is_floating_point() and not (v.is_floating_point() or v.is_complex())]
    if bad:
        raise CheckpointError(
            f"checkpoint {source}: {len(bad)} tensor(s) are not floating point where the model's are, e.g. "
            f"{bad[0]} ({sd[bad[0]].dtype})"
        )
    # checked after the cast to the model's dtypes: a float64 1e300 is finite, and Inf once it is float32
    cast = {k: v.to(own[k].dtype) for k, v in sd.items()}
    nonfinite = [k for k, v in cast.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        dtype = cast[nonfinite[0]].dtype
        raise CheckpointError(
            f"checkpoint {source}: {len(nonfinite)} tensor(s) hold NaN or Inf as {dtype}, e.g. {nonfinite[0]} "
            f"(stored as {sd[nonfinite[0]].dtype})"
        )
    return cast, dropped


def check_finite(model: torch.nn.Module, source: str) -> None:
    """Refuse a model whose parameters or buffers hold NaN or Inf once loaded and cast (``torch_dtype=float16`` turns
    a weight above 65504 into Inf), naming the first tensor."""
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"checkpoint {source}: tensor {name} holds NaN or Inf as {t.dtype} (a value beyond its range after "
                "the cast?); load it in a wider dtype"
            )
