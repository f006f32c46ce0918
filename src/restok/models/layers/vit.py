"""The one ViT block of restok (App. A.1): ResTok's encoder and decoder, TiTok's and One-D-Piece's, and the frozen DINO
ViTs of the training objective are all stacks of it.

One computation -- a pre-norm attention residual, then a pre-norm MLP residual -- with the options in which those
networks really differ (:class:`BlockSpec`): ResTok's per-head LayerNorm on q and k with 2-D RoPE, its LayerScale and
its q/v-only projection biases; which projection biases exist elsewhere; the GELU's approximation; the norms' epsilon;
and ResTok's residual merge between the two residuals (Alg. 2). How a checkpoint spells the same parameters is a
naming choice, not a second implementation: ``timm`` names (``norm1``, ``attn.qkv``, ``attn.proj``, ``mlp.fc1``;
ResTok and DINO) or ``clip`` names (``ln_1``, ``attn.in_proj_weight``, ``attn.out_proj``, ``mlp.c_fc``; TiTok's
``nn.MultiheadAttention`` blocks, whose initialisation the ``clip`` layout also reproduces).

Axes: B batch, N tokens, D width, h heads, d head size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rope import apply_rotary

__all__ = ["BlockSpec", "Attention", "Mlp", "Block", "RESTOK_BLOCK", "TITOK_BLOCK", "DINO_BLOCK"]

_NAMES = {
    "timm": {"norm1": "norm1", "norm2": "norm2", "fc1": "fc1", "fc2": "fc2"},
    "clip": {"norm1": "ln_1", "norm2": "ln_2", "fc1": "c_fc", "fc2": "c_proj"},
}


@dataclass(frozen=True)
class BlockSpec:
    """What a family's ViT block computes, and how its checkpoints name the parameters."""

    qkv_bias: str = "all"  # "all": one bias for q, k and v; "qv": q and v biases, k none (ResTok); "none"
    qk_norm: bool = False  # per-head LayerNorm on q and k, before the rotary embedding (ResTok)
    layer_scale: bool = False  # learned per-channel scales of both residuals (ResTok's gamma_1, gamma_2)
    norm_eps: float = 1e-5
    gelu: str = "none"  # "none" (exact) or "tanh"
    mlp_ratio: float = 4.0
    names: str = "timm"  # "timm" or "clip" (see the module's docstring)

    def __post_init__(self) -> None:
        if self.qkv_bias not in ("all", "qv", "none"):
            raise ValueError(f"qkv_bias must be 'all', 'qv' or 'none', got {self.qkv_bias!r}")
        if self.names not in _NAMES:
            raise ValueError(f"names must be one of {sorted(_NAMES)}, got {self.names!r}")
        if self.names == "clip" and self.qkv_bias != "all":
            raise ValueError("the clip layout (nn.MultiheadAttention's) has one bias for q, k and v")


RESTOK_BLOCK = BlockSpec(qkv_bias="qv", qk_norm=True, layer_scale=True)
TITOK_BLOCK = BlockSpec(names="clip")
DINO_BLOCK = BlockSpec(norm_eps=1e-6, gelu="tanh")


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection; optional q/k LayerNorms and rotary embedding."""

    def __init__(self, dim: int, num_heads: int, spec: BlockSpec = BlockSpec()) -> None:
        super().__init__()
        self.num_heads, self.spec = num_heads, spec
        head_dim = dim // num_heads
        if spec.names == "clip":
            # nn.MultiheadAttention's parameters, created and initialised in its order (seeded inits stay the same)
            self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
            self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
            self.out_proj = nn.Linear(dim, dim)
            nn.init.xavier_uniform_(self.in_proj_weight)
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=spec.qkv_bias == "all")
            if spec.qkv_bias == "qv":
                self.q_bias = nn.Parameter(torch.zeros(dim))
                self.v_bias = nn.Parameter(torch.zeros(dim))
                self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        if spec.qk_norm:
            self.q_norm = nn.LayerNorm(head_dim, eps=1e-5)
            self.k_norm = nn.LayerNorm(head_dim, eps=1e-5)
        if spec.names != "clip":
            self.proj = nn.Linear(dim, dim)

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, 3D), the fused projection with the biases this spec has."""
        if self.spec.names == "clip":
            return F.linear(x, self.in_proj_weight, self.in_proj_bias)
        if self.spec.qkv_bias == "qv":
            return F.linear(x, self.qkv.weight, torch.cat((self.q_bias, self.k_bias, self.v_bias)))
        return self.qkv(x)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, D) -> (B, N, D); ``rope`` is a (cos, sin) table (N, d/2), ``mask`` boolean (N, N), True = may
        attend. With ``return_weights`` also the head-averaged attention probabilities (B, N, N)."""
        B, N, D = x.shape
        qkv = self._qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = qkv.unbind(0)  # (B, h, N, d) each
        if self.spec.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)  # (B, h, N, d) each
        if rope is not None:
            cos, sin = rope
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # (B, h, N, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
        weights = None
        if return_weights:
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, h, N, N)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))  # (B, h, N, N)
            weights = scores.softmax(-1).mean(1)  # (B, N, N)
        out = out.transpose(1, 2).reshape(B, N, D)  # (B, N, D)
        return (self.out_proj(out) if self.spec.names == "clip" else self.proj(out)), weights


class Mlp(nn.Module):
    """Linear -> GELU -> linear (``fc1``/``fc2``, or ``c_fc``/``c_proj`` in the clip layout)."""

    def __init__(self, dim: int, hidden: int, gelu: str = "none", names: str = "timm") -> None:
        super().__init__()
        self._fc1, self._fc2, self.approximate = _NAMES[names]["fc1"], _NAMES[names]["fc2"], gelu
        setattr(self, self._fc1, nn.Linear(dim, hidden))
        setattr(self, self._fc2, nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        h = F.gelu(getattr(self, self._fc1)(x), approximate=self.approximate)  # (B, N, hidden)
        return getattr(self, self._fc2)(h)  # (B, N, D)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))`` (each residual scaled by
    LayerScale when the spec has it). ``forward`` can run ResTok's residual merge between the two (Alg. 2, lines
    2-5)."""

    def __init__(self, dim: int, num_heads: int, spec: BlockSpec = BlockSpec()) -> None:
        super().__init__()
        names = _NAMES[spec.names]
        self.spec, self._norm1, self._norm2 = spec, names["norm1"], names["norm2"]
        setattr(self, self._norm1, nn.LayerNorm(dim, eps=spec.norm_eps))
        self.attn = Attention(dim, num_heads, spec)
        setattr(self, self._norm2, nn.LayerNorm(dim, eps=spec.norm_eps))
        self.mlp = Mlp(dim, int(dim * spec.mlp_ratio), spec.gelu, spec.names)
        if spec.layer_scale:
            self.gamma_1 = nn.Parameter(torch.ones(dim))
            self.gamma_2 = nn.Parameter(torch.ones(dim))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        merge_tokens: int = 0,
        residual_merge: bool = True,
        merge_factor: int = 2,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, D) -> (B, N + merge_tokens/merge_factor, D), and the attention weights when asked.

        If ``merge_tokens`` > 0, the first ``merge_tokens`` tokens (the current coarsest image level) are merged after
        the attention residual: every ``merge_factor``-th token is kept as a new, coarser level that is prepended, and
        (``residual_merge``) the nearest-upsampled merged tokens are subtracted from the level they came from (Alg. 2,
        lines 3-4).
        """
        a, weights = self.attn(getattr(self, self._norm1)(x), rope, mask, return_weights)  # (B, N, D)
        x = x + (self.gamma_1 * a if self.spec.layer_scale else a)  # (B, N, D)
        if merge_tokens:
            level = x[:, :merge_tokens]  # (B, n, D)
            f = merge_factor
            merged = level[:, ::f]  # (B, n/f, D): the official 1-D nearest interpolation to n/f
            if residual_merge:
                level = level - merged.repeat_interleave(f, dim=1)  # (B, n, D)
            x = torch.cat((merged, level, x[:, merge_tokens:]), dim=1)  # (B, N + n/f, D)
        m = self.mlp(getattr(self, self._norm2)(x))  # (B, N + n/f, D)
        return x + (self.gamma_2 * m if self.spec.layer_scale else m), weights
