"""Transformer blocks of the tokenizer's ViT encoder and decoder (App. A.1), official state-dict names.

Axes: B batch, N tokens, D width, h heads, d head size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rope import apply_rotary

__all__ = ["Attention", "Mlp", "Block"]


class Attention(nn.Module):
    """Multi-head attention with a fused bias-free qkv projection plus q/v biases (the k bias is 0),
    per-head LayerNorm on q and k, and 2-D RoPE applied after the norms."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-5)
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-5)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, D) -> (B, N, D); ``mask`` is boolean (N, N), True = may attend.

        With ``return_weights`` also returns the head-averaged attention probabilities (B, N, N).
        """
        B, N, D = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))  # (3D,)
        qkv = (
            F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        )  # (3, B, h, N, d)
        q, k, v = qkv.unbind(0)  # (B, h, N, d) each
        q, k = self.q_norm(q), self.k_norm(k)  # (B, h, N, d) each
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # (B, h, N, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
        weights = None
        if return_weights:
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, h, N, N)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))  # (B, h, N, N)
            weights = scores.softmax(-1).mean(1)  # (B, N, N)
        return self.proj(out.transpose(1, 2).reshape(B, N, D)), weights  # (B, N, D)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        return self.fc2(self.act(self.fc1(x)))  # (B, N, hidden) -> (B, N, D)


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale; ``forward`` can run a residual merge between the
    attention and the MLP residuals (Alg. 2, lines 2-5)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma_1 = nn.Parameter(torch.ones(dim))
        self.gamma_2 = nn.Parameter(torch.ones(dim))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None = None,
        merge_tokens: int = 0,
        residual_merge: bool = True,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, D) -> (B, N + merge_tokens/2, D).

        If ``merge_tokens`` > 0, the first ``merge_tokens`` tokens (the current coarsest image level)
        are merged after the attention residual: every other token is kept as a new, coarser level that
        is prepended, and (``residual_merge``) the nearest-upsampled merged tokens are subtracted from
        the level they came from (Alg. 2, lines 3-4).
        """
        a, weights = self.attn(self.norm1(x), rope, mask, return_weights)  # (B, N, D)
        x = x + self.gamma_1 * a  # (B, N, D)
        if merge_tokens:
            level = x[:, :merge_tokens]  # (B, n, D)
            merged = level[:, ::2]  # (B, n/2, D): the official 1-D nearest interpolation to n/2
            if residual_merge:
                level = level - merged.repeat_interleave(2, dim=1)  # (B, n, D)
            x = torch.cat((merged, level, x[:, merge_tokens:]), dim=1)  # (B, N + n/2, D)
        x = x + self.gamma_2 * self.mlp(self.norm2(x))  # (B, N + n/2, D)
        return x, weights
