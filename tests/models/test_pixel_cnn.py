"""Pixel CNN: the rewritten convolutions compute the official function, in training and inference, and the
no-grad weight cache follows every change of the weights."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from restok.models.layers.pixel_cnn import (
    PixelCNNConfig,
    PixelDecoder,
    PixelEncoder,
    ResnetBlock,
    clear_prepared_weights,
)

CFG = PixelCNNConfig(hidden_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, z_channels=16, num_groups=8)


# The official computation, written out plainly, is the library's reference path.
def _block_ref(b: ResnetBlock, x: torch.Tensor) -> torch.Tensor:
    return b.forward_reference(x)


def _encoder_ref(enc: PixelEncoder, x: torch.Tensor) -> torch.Tensor:
    return enc.forward_reference(x)


def _decoder_ref(dec: PixelDecoder, z: torch.Tensor) -> torch.Tensor:
    return dec.forward_reference(z)


def _randomise(m: nn.Module, seed: int) -> nn.Module:
    """Non-trivial GroupNorm affine parameters too (the defaults are 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.ndim > 1 else 0.5) + (1.0 if p.ndim == 1 else 0.0))
    return m


def _models() -> tuple[PixelEncoder, PixelDecoder]:
    return _randomise(PixelEncoder(CFG), 0).eval(), _randomise(PixelDecoder(CFG), 1).eval()


@pytest.mark.parametrize("size", [(16, 16), (12, 20), (8, 28)])
def test_rewritten_cnn_equals_the_official_computation(size):
    enc, dec = _models()
    x = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(2))
    z = torch.randn(3, 16, size[0] // 4, size[1] // 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for _ in range(2):  # the second call runs on the cached rewritten weights
            fe, re = enc(x), _encoder_ref(enc, x)
            fd, rd = dec(z), _decoder_ref(dec, z)
            assert fe.shape == re.shape == (3, 16, size[0] // 4, size[1] // 4)
            assert fd.shape == rd.shape == (3, 3, *size)
            torch.testing.assert_close(fe, re, rtol=1e-5, atol=1e-5 * re.abs().max().item())
            torch.testing.assert_close(fd, rd, rtol=1e-5, atol=1e-5 * rd.abs().max().item())
            assert fe.is_contiguous() and fd.is_contiguous()


def test_odd_sizes_pool_like_avg_pool2d():
    """avg_pool2d floors odd sizes; the folded stride-2 conv must cover exactly the same windows."""
    b = _randomise(ResnetBlock(8, 8, 4), 4).eval()
    x = torch.randn(2, 8, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(b(x, pool=True), F.avg_pool2d(_block_ref(b, x), 2, 2), rtol=1e-5, atol=1e-5)
    b2 = _randomise(ResnetBlock(8, 16, 4), 5).eval()  # with the folded nin shortcut
    with torch.no_grad():
        torch.testing.assert_close(b2(x, pool=True), F.avg_pool2d(_block_ref(b2, x), 2, 2), rtol=1e-5, atol=1e-5)


def test_training_forward_and_gradients_match_the_official_computation():
    enc, dec = _models()
    enc.train(), dec.train()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    loss = dec(enc(x)).square().mean()
    grads = torch.autograd.grad(loss, list(enc.parameters()) + list(dec.parameters()))
    ref = _decoder_ref(dec, _encoder_ref(enc, x)).square().mean()
    ref_grads = torch.autograd.grad(ref, list(enc.parameters()) + list(dec.parameters()))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=0)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * r.abs().max().item() + 1e-9)


def test_no_grad_cache_follows_weight_changes():
    enc, dec = _models()
    z = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        before = dec(z)
    # An optimizer step changes the weights in place: the cached rewrites must not be reused.
    opt = torch.optim.SGD(dec.parameters(), lr=0.5)
    dec(z).square().mean().backward()
    opt.step()
    with torch.no_grad():
        after = dec(z)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, _decoder_ref(dec, z), rtol=1e-5, atol=1e-5 * after.abs().max().item())
    # load_state_dict writes in place as well.
    other = _randomise(PixelDecoder(CFG), 9).eval()
    dec.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(dec(z), other(z), rtol=0, atol=0)
    # A copy gets its own weights (and so misses the original's cache entries).
    twin = copy.deepcopy(dec)
    with torch.no_grad():
        twin.up[1].upsample_conv.weight.mul_(2.0)
        torch.testing.assert_close(twin(z), _decoder_ref(twin, z), rtol=1e-5, atol=1e-5 * twin(z).abs().max().item())
        torch.testing.assert_close(dec(z), other(z), rtol=0, atol=0)
    # Writes through .data bypass the version counter: clear_prepared_weights is the documented remedy.
    with torch.no_grad():
        stale = dec(z)
        dec.up[1].upsample_conv.weight.data.mul_(3.0)
        clear_prepared_weights(dec)
        fresh = dec(z)
        assert not torch.allclose(stale, fresh)
        torch.testing.assert_close(fresh, _decoder_ref(dec, z), rtol=1e-5, atol=1e-5 * fresh.abs().max().item())


def test_bfloat16_autocast_runs_and_stays_close():
    enc, _ = _models()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(x)
    ref = _encoder_ref(enc, x)
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_frozen_weights_cached_in_inference_mode_still_pass_gradients_to_inputs():
    """A frozen decoder first used under inference_mode, then inside a graph (e.g. a loss on generated features)."""
    _, dec = _models()
    dec.requires_grad_(False)
    z = torch.randn(2, 16, 4, 4)
    with torch.inference_mode():
        dec(z)  # fills the cache
    zg = z.clone().requires_grad_(True)
    out = dec(zg)  # frozen weights: served from the cache, which must be usable in a graph
    (grad,) = torch.autograd.grad(out.square().sum(), zg)
    zr = z.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(_decoder_ref(dec, zr).square().sum(), zr)
    torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_the_switch_chooses_the_reference_path():
    """set_fast_convs(False) runs the plain official computation everywhere (and back)."""
    from restok.models.layers.pixel_cnn import set_fast_convs, use_fast_convs

    enc, dec = _models()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fast = dec(enc(x))
        try:
            set_fast_convs(False)
            assert not use_fast_convs()
            ref = dec(enc(x))
            assert torch.equal(ref, dec.forward_reference(enc.forward_reference(x)))
        finally:
            set_fast_convs(True)
    assert use_fast_convs() and torch.allclose(fast, ref, atol=1e-4, rtol=1e-4) and not torch.equal(fast, ref)
