"""Rotary position embeddings: the tokenizer's 2-D M-RoPE (App. A.1, Fig. 9) and the generator's 1-D RoPE.

Tables are returned as a pair ``(cos, sin)`` of shape ``[N, head_dim / 2]``; rotation acts on adjacent
element pairs ``(x[2j], x[2j+1])``. Angles are computed the way each official model computes them
(float64 for the tokenizer, float32 via ``torch.polar`` for the generator) so released weights give
the same numbers.
"""

from __future__ import annotations

import torch

__all__ = ["mrope_table", "rope_1d_table", "apply_rotary", "RopeTable"]


def mrope_table(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D M-RoPE: head dims ``[0, hd/2)`` rotate with axis-0 ids, ``[hd/2, hd)`` with axis-1 ids.

    Args:
        position_ids: ``[N, 2]`` integer ids (from :mod:`restok.hierarchy`).
        head_dim: attention head size; must be divisible by 4.
        theta: RoPE base.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head size divisible by 4, got {head_dim}")
    axis_dim = head_dim // 2
    omega = 1.0 / (theta ** (torch.arange(0, axis_dim, 2, dtype=torch.float64) / axis_dim))  # (hd/4,)
    pos = position_ids.to(torch.float64)  # (N, 2)
    angles = torch.cat([pos[:, 0:1] * omega, pos[:, 1:2] * omega], dim=-1)  # (N, hd/2)
    return torch.cos(angles).float(), torch.sin(angles).float()  # (N, hd/2) each


def rope_1d_table(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D RoPE for positions ``0..seq_len-1`` computed in float32 as LlamaGen/gpt-fast do."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))  # (hd/2,)
    angles = torch.outer(torch.arange(seq_len), freqs)  # (T, hd/2)
    rot = torch.polar(torch.ones_like(angles), angles)  # (T, hd/2) complex
    return rot.real.contiguous(), rot.imag.contiguous()  # (T, hd/2) each


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of the last dim of ``x`` by the given table, in float32.

    ``cos``/``sin`` must broadcast against ``x[..., ::2]`` (e.g. ``[N, hd/2]`` for ``x`` of
    ``[B, H, N, hd]``, or ``[N, 1, hd/2]`` for ``[B, N, H, hd]``).
    """
    xf = x.float().unflatten(-1, (-1, 2))  # (..., hd/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)  # (..., hd/2, 2)
    return out.flatten(-2).type_as(x)  # (..., hd)


class RopeTable(torch.nn.Module):
    """A ``(cos, sin)`` table kept as non-persistent buffers that follow the model's device but stay float32 when the
    model is cast to another dtype (``.to(torch.bfloat16)`` must not round the angles): a cast moves them, never
    converts them. Nothing is saved in the state dict."""

    def __init__(self, table: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        self.register_buffer("cos", table[0].float(), persistent=False)
        self.register_buffer("sin", table[1].float(), persistent=False)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def] - nn.Module's signature
        device = fn(torch.zeros((), device=self.cos.device)).device  # where the model goes; its dtype is ignored
        self.cos, self.sin = self.cos.to(device), self.sin.to(device)
        return self

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole table."""
        return self.cos, self.sin
