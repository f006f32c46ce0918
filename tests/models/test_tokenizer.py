"""ResTok tokenizer: official shapes, causality, prefix decoding, training outputs and input errors."""

from __future__ import annotations

import pytest
import torch

from restok import ResTok, ResTokConfig
from restok.core import hierarchy as Hy
from restok.models.layers.pixel_cnn import PixelCNNConfig
from restok.models.restok.config import tokenizer_preset

from ..helpers import official_keys


def test_official_preset_parameter_count_and_keys():
    with torch.device("meta"):
        tok = ResTok.from_preset("restok-l-128")
    assert sum(p.numel() for p in tok.parameters()) == 659_693_771
    ours = {k: tuple(v.shape) for k, v in tok.state_dict().items()}
    assert ours == official_keys("tokenizer")


def test_preset_registry_and_overrides():
    cfg = tokenizer_preset("restok-tiny", num_tokens=16)
    assert cfg.num_tokens == 16 and cfg.prefix_lengths == (4, 8, 16)
    with pytest.raises(ValueError, match="unknown tokenizer preset"):
        ResTok.from_preset("restok-huge")
    with pytest.raises(ValueError, match="unknown ResTokConfig field"):
        tokenizer_preset("restok-tiny", num_token=16)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_tokens": 48}, "power of two"),
        ({"min_tokens": 3}, "min_tokens"),
        ({"image_size": 30}, "not divisible"),
        ({"image_size": 8}, "too small|cannot be merged"),
        ({"num_heads": 3}, "divisible"),
        ({"depth": 2}, "cannot hold"),
        ({"pixel_cnn": {"hidden_channels": 20, "channel_mult": (1, 2)}}, "num_groups"),
    ],
)
def test_impossible_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        tokenizer_preset("restok-tiny", **overrides)


def test_encode_decode_shapes_and_range(tiny_tok):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ids = tiny_tok.encode(x)
    assert ids.shape == (3, 32) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < tiny_tok.codebook_size
    for k in tiny_tok.prefix_lengths:
        out = tiny_tok.decode(ids[:, :k])
        assert out.shape == (3, 3, 32, 32)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_prefix_decoding_differs_by_token_count(tiny_tok):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ids = tiny_tok.encode(x)
    _, q = tiny_tok.encode_latents(x)
    with torch.no_grad():
        outs = {k: tiny_tok.decode_codes(q.codes, k) for k in tiny_tok.prefix_lengths}
    # masking positions >= k is equivalent to decoding only the first k ids
    with torch.no_grad():
        for k in tiny_tok.prefix_lengths:
            torch.testing.assert_close(tiny_tok.decode(ids[:, :k]), outs[k].clamp(0, 1), atol=1e-4, rtol=0)
    assert not torch.allclose(outs[4], outs[32])
    # per-sample kept lengths equal the per-k decodes
    with torch.no_grad():
        mixed = tiny_tok.decode_codes(q.codes, [4, 32])
    torch.testing.assert_close(mixed[0], outs[4][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1], outs[32][1], atol=1e-5, rtol=0)


def test_same_seed_same_model_and_tokens():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ids = []
    for _ in range(2):
        torch.manual_seed(123)
        ids.append(ResTok.from_preset("restok-tiny").eval().encode(x))
    assert torch.equal(ids[0], ids[1])


def _capture(module: torch.nn.Module, store: list) -> torch.utils.hooks.RemovableHandle:
    """Record a module's first input."""
    return module.register_forward_hook(lambda m, inp, out: store.append(inp[0].detach().clone()))


def test_encoder_latent_levels_are_causal(tiny_tok):
    # perturbing the finest latent level's initial tokens leaves coarser latent outputs unchanged (Fig. 8a)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    enc, L = tiny_tok.encoder, tiny_tok.num_tokens
    start = Hy.latent_level_bounds(L)[-1][0]
    outs: list = []
    h = _capture(enc.ln_post, outs)
    with torch.no_grad():
        tiny_tok.encode_latents(x)
        hook = enc.ln_pre.register_forward_hook(
            lambda m, i, o: o.index_add(
                1, torch.arange(o.shape[1] - (L - start), o.shape[1]), torch.randn(1, L - start, o.shape[2])
            )
        )
        tiny_tok.encode_latents(x)
        hook.remove()
    h.remove()
    assert torch.equal(outs[0][:, :start], outs[1][:, :start])
    assert not torch.allclose(outs[0][:, start:], outs[1][:, start:])


def test_encoder_image_levels_are_causal(tiny_tok):
    # after the last merge, changing the finest image-token level leaves the coarser levels unchanged
    enc, cfg = tiny_tok.encoder, tiny_tok.config
    grids = Hy.image_level_grids((cfg.grid_size, cfg.grid_size), cfg.hierarchy_stages)
    sizes = [h * w for h, w in grids]
    mask, rope = enc._stage_tables(grids, cfg.width // cfg.num_heads, torch.device("cpu"))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, sum(sizes) + cfg.num_tokens, cfg.width, generator=g)
    y = x.clone()
    fine = slice(sum(sizes[:-1]), sum(sizes))
    y[:, fine] += torch.randn(y[:, fine].shape, generator=g)
    with torch.no_grad():
        for blk in enc.blocks[max(enc.merge_at) + 1 :]:
            x, _ = blk(x, rope, mask)
            y, _ = blk(y, rope, mask)
    coarse = slice(0, sum(sizes[:-1]))
    torch.testing.assert_close(x[:, coarse], y[:, coarse], atol=0, rtol=0)
    assert not torch.allclose(x[:, fine], y[:, fine])


def test_residual_latent_init_second_level_is_near_zero(tiny_tok):
    # Alg. 1: level 2 pools the residual after removing the global mean, so it is ~0 (spec §1.4)
    feats = torch.randn(2, tiny_tok.config.width, 8, 8)
    lat = tiny_tok.encoder._init_latents(feats)
    assert lat[:, 1].abs().max() < 1e-5
    torch.testing.assert_close(lat[:, 0], feats.mean((2, 3)), atol=1e-5, rtol=0)


def test_training_forward_returns_losses_and_gradients(tiny_tok):
    tok = tiny_tok.train()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    out = tok(x, generator=torch.Generator().manual_seed(0))
    assert out.reconstruction.shape == x.shape
    assert set(out.kept_tokens.tolist()) <= set(tok.prefix_lengths)
    assert out.quantizer_loss > 0 and torch.isfinite(out.quantizer_loss)
    loss = torch.mean((out.reconstruction - x) ** 2) + out.quantizer_loss
    loss.backward()
    assert tok.quantize.embedding.weight.grad is not None
    assert tok.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    # with a short prefix kept, the latent mask token takes part and must receive gradient
    short = tok(x, kept_tokens=[4, 8, 16, 32])
    short.reconstruction.mean().backward()
    assert tok.decoder.latent_mask_token.grad.abs().sum() > 0


def test_nested_dropout_sampling_follows_probabilities(tiny_tok):
    kept = tiny_tok.sample_kept_tokens(20000, torch.Generator().manual_seed(0))
    freq = torch.stack([(kept == k).float().mean() for k in tiny_tok.prefix_lengths])
    expected = torch.tensor(Hy.nested_dropout_probs(32, 4, 0.2), dtype=torch.float32)
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(3, 32, 32), "rank 3"),
        (torch.rand(1, 1, 32, 32), "3 \\(RGB\\) channels"),
        (torch.rand(1, 3, 64, 64), "32x32"),
        ((torch.rand(1, 3, 32, 32) * 255).to(torch.uint8), "divide uint8"),
        (torch.rand(1, 3, 32, 32) * 2 - 1, "\\[0, 1\\]"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_images_raise_clear_errors(tiny_tok, images, message):
    with pytest.raises(ValueError, match=message):
        tiny_tok.encode(images)


@pytest.mark.parametrize(
    "ids, message",
    [
        (torch.zeros(1, 6, dtype=torch.long), "allowed prefix lengths"),
        (torch.full((1, 8), 1024, dtype=torch.long), "\\[0, 1024\\)"),
        (torch.full((1, 8), -1, dtype=torch.long), "\\[0, 1024\\)"),
        (torch.zeros(1, 8), "integer"),
        (torch.zeros(8, dtype=torch.long), "shape \\[B, k\\]"),
    ],
)
def test_bad_ids_raise_clear_errors(tiny_tok, ids, message):
    with pytest.raises(ValueError, match=message):
        tiny_tok.decode(ids)


def test_bad_kept_lengths_raise(tiny_tok):
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="not allowed"):
        tiny_tok(x, kept_tokens=5)
    with pytest.raises(ValueError, match="batch of 2"):
        tiny_tok(x, kept_tokens=[4, 8, 16])


def test_config_must_be_typed():
    with pytest.raises(TypeError, match="ResTokConfig"):
        ResTok({"num_tokens": 32})  # type: ignore[arg-type]
    assert isinstance(ResTokConfig().pixel_cnn, PixelCNNConfig)
