"""The LlamaGen-style GPT blocks of the generator (Sec. 4; official names): RMSNorm, attention with fused
bias-free qkv and 1-D RoPE that writes an explicit static KV cache, SwiGLU, stochastic depth, and the class
embedding with its null row for classifier-free guidance.

Axes: B batch, T positions, D width, h heads, h_kv key/value heads, d head size, L cached positions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rope import apply_rotary

if TYPE_CHECKING:  # the blocks read the GPT's sizes from HAR's config (HAR and LlamaGen's GPT share it)
    from ..har.config import HARConfig

__all__ = [
    "RMSNorm",
    "Attention",
    "FeedForward",
    "DropPath",
    "TransformerBlock",
    "LabelEmbedder",
    "SpecialTokenEmbedding",
]


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        xf = x.float()  # (..., D) float32
        return (xf * torch.rsqrt(torch.mean(xf * xf, dim=-1, keepdim=True) + self.eps)).type_as(
            x
        ) * self.weight  # (..., D)


class Attention(nn.Module):
    """Causal/grouped self-attention with fused bias-free qkv and 1-D RoPE."""

    def __init__(self, cfg: HARConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv = cfg.n_head, cfg.n_kv_head or cfg.n_head
        self.head_dim = cfg.dim // cfg.n_head
        self.wqkv = nn.Linear(cfg.dim, (self.n_head + 2 * self.n_kv) * self.head_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, D) -> (B, T, D). With ``cache``, k/v are written at ``positions`` and attention runs
        over the whole static cache under ``mask`` (T, L)."""
        B, T, D = x.shape
        kv = self.n_kv * self.head_dim
        q, k, v = self.wqkv(x).split([D, kv, kv], dim=-1)  # (B, T, D), (B, T, h_kv*d), (B, T, h_kv*d)
        q = q.view(B, T, self.n_head, self.head_dim)  # (B, T, h, d)
        k = k.view(B, T, self.n_kv, self.head_dim)  # (B, T, h_kv, d)
        v = v.view(B, T, self.n_kv, self.head_dim)  # (B, T, h_kv, d)
        cos, sin = rope  # (T, d/2) each
        q = apply_rotary(q, cos[:, None], sin[:, None])  # (B, T, h, d)
        k = apply_rotary(k, cos[:, None], sin[:, None])  # (B, T, h_kv, d)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, h, T, d), (B, h_kv, T, d) x 2
        if cache is not None:
            kc, vc = cache  # (B, h_kv, L, d) each
            kc.index_copy_(2, positions, k.to(kc.dtype))  # in place: the static cache (no host sync, graph-safe)
            vc.index_copy_(2, positions, v.to(vc.dtype))
            k, v = kc.to(q.dtype), vc.to(q.dtype)  # (B, h_kv, L, d) each
        if self.n_kv != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv, dim=1)  # (B, h, L or T, d)
            v = v.repeat_interleave(self.n_head // self.n_kv, dim=1)  # (B, h, L or T, d)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout_p if self.training else 0.0
        )  # (B, h, T, d)
        return self.resid_dropout(self.wo(out.transpose(1, 2).reshape(B, T, D)))  # (B, T, D)


class FeedForward(nn.Module):
    """SwiGLU MLP."""

    def __init__(self, cfg: HARConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))  # (B, T, hidden) -> (B, T, D)


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero whole samples with probability p, rescaling the rest."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)  # (B, 1, ..., 1)
        return x * keep / (1 - self.p)  # same shape as x


class TransformerBlock(nn.Module):
    """Pre-norm (RMSNorm) attention + SwiGLU block."""

    def __init__(self, cfg: HARConfig, drop_path: float) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        h = x + self.drop_path(self.attention(self.attention_norm(x), rope, mask, cache, positions))  # (B, T, D)
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))  # (B, T, D)


class LabelEmbedder(nn.Module):
    """Class embeddings with an extra null row (id ``num_classes``) for classifier-free guidance."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float) -> None:
        super().__init__()
        self.num_classes, self.dropout_prob = num_classes, dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim)

    def forward(self, labels: torch.Tensor, train: bool) -> torch.Tensor:
        """(B,) class ids -> (B, 1, D); in training a ``dropout_prob`` fraction becomes the null class."""
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob  # (B,)
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)  # (B,)
        return self.embedding_table(labels).unsqueeze(1)  # (B, 1, D)


class SpecialTokenEmbedding(nn.Module):
    """One learned embedding per missing position of the HAR groups ("[M_i]" in Fig. 4)."""

    def __init__(self, rows: int, dim: int) -> None:
        super().__init__()
        self.special_embeddings = nn.Embedding(rows, dim)
