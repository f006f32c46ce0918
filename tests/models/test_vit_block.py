"""The one ViT block: each family's layout computes what that family's own block computes, checked against independent
implementations (torch's ``nn.MultiheadAttention`` for TiTok's CLIP-style blocks; a plain re-statement of the DINO/timm
block), bit for bit and with the same seeded initialisation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from restok.models.layers.vit import DINO_BLOCK, RESTOK_BLOCK, TITOK_BLOCK, Block, BlockSpec


class _TorchCLIPBlock(nn.Module):
    """TiTok's released block written with torch's own attention module (sequence-first, as TiTok runs it)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(1, 0, 2)  # (N, B, W)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln_2(x))
        return x.permute(1, 0, 2)


def test_clip_layout_equals_torch_multihead_attention_bit_for_bit() -> None:
    torch.manual_seed(3)
    ref = _TorchCLIPBlock(64, 4).eval()
    torch.manual_seed(3)
    ours = Block(64, 4, TITOK_BLOCK).eval()
    # same parameter names, order and seeded values (nn.MultiheadAttention's initialisation reproduced)
    assert list(ref.state_dict()) == list(ours.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), ours.state_dict().values()))
    x = torch.randn(3, 17, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ref(x), ours(x)[0])


def _dino_reference(blk: Block, x: torch.Tensor, heads: int) -> torch.Tensor:
    """The DINO/timm block, stated plainly from the block's parameters."""
    B, N, D = x.shape
    h = F.layer_norm(x, (D,), blk.norm1.weight, blk.norm1.bias, 1e-6)
    q, k, v = F.linear(h, blk.attn.qkv.weight, blk.attn.qkv.bias).reshape(B, N, 3, heads, -1).permute(2, 0, 3, 1, 4)
    a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D)
    x = x + F.linear(a, blk.attn.proj.weight, blk.attn.proj.bias)
    h = F.layer_norm(x, (D,), blk.norm2.weight, blk.norm2.bias, 1e-6)
    h = F.gelu(F.linear(h, blk.mlp.fc1.weight, blk.mlp.fc1.bias), approximate="tanh")
    return x + F.linear(h, blk.mlp.fc2.weight, blk.mlp.fc2.bias)


def test_dino_layout_is_the_plain_timm_block() -> None:
    torch.manual_seed(0)
    blk = Block(32, 2, DINO_BLOCK).eval()
    assert set(blk.state_dict()) == {
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
        "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
    }  # fmt: skip
    x = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(blk(x)[0], _dino_reference(blk, x, 2))


def test_restok_layout_has_qv_biases_qk_norms_and_layer_scale() -> None:
    blk = Block(32, 2, RESTOK_BLOCK)
    names = set(blk.state_dict())
    assert {"attn.q_bias", "attn.v_bias", "attn.q_norm.weight", "attn.k_norm.weight", "gamma_1", "gamma_2"} <= names
    assert "attn.k_bias" not in names and "attn.qkv.bias" not in names  # the k bias is a fixed zero, not a weight
    # LayerScale scales both residuals: zero scales make the block the identity
    with torch.no_grad():
        blk.gamma_1.zero_()
        blk.gamma_2.zero_()
    x = torch.randn(2, 8, 32)
    rope = (torch.ones(8, 8), torch.zeros(8, 8))
    assert torch.equal(blk(x, rope)[0], x)


def test_residual_merge_prepends_the_coarser_level_and_subtracts_it() -> None:
    """Alg. 2: after the attention residual, every other token of the coarsest level becomes a new level in front, and
    is subtracted (nearest-upsampled) from the level it came from."""
    blk = Block(8, 2, dataclasses.replace(RESTOK_BLOCK))
    with torch.no_grad():
        for p in (blk.gamma_1, blk.gamma_2):
            p.zero_()  # both residuals off: only the merge acts
    x = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(2, 6, 8)
    rope = (torch.ones(6, 2), torch.zeros(6, 2))
    out, _ = blk(x, rope, merge_tokens=4)
    assert out.shape == (2, 8, 8)  # N + n/2
    assert torch.equal(out[:, :2], x[:, 0:4:2])
    assert torch.equal(out[:, 2:6], x[:, :4] - x[:, 0:4:2].repeat_interleave(2, dim=1))
    assert torch.equal(out[:, 6:], x[:, 4:])


def test_specs_refuse_what_no_family_computes() -> None:
    with pytest.raises(ValueError, match="qkv_bias"):
        BlockSpec(qkv_bias="k")
    with pytest.raises(ValueError, match="clip layout"):
        BlockSpec(names="clip", qkv_bias="qv")
