"""Loss terms against hand-computed values; the frozen networks' loading paths with weights the test makes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from restok.train.backbones import LPIPS, BackboneError, ViT, build_dino_backbone, build_feature_teacher, build_lpips
from restok.train.losses import (
    BatchNormLocal,
    DinoDiscriminator,
    TokenizerLoss,
    TokenizerLossConfig,
    alignment_loss,
    diff_augment,
    hinge_d_loss,
    hinge_g_loss,
    lecam_regularizer,
    lpips_jitter,
    patch_alignment_loss,
)


def test_hinge_losses_hand_values() -> None:
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - r) = 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-2.0, 0.0])  # relu(1 + f) = 0, 1 -> mean 1/2
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 0.5))
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)


def test_lecam_hand_values() -> None:
    # relu(0.3 - (-0.2))^2 + relu(0.1 - (-0.4))^2 = 0.25 + 0.25
    v = lecam_regularizer(torch.tensor(0.3), torch.tensor(-0.4), torch.tensor(0.1), torch.tensor(-0.2))
    assert v.item() == pytest.approx(0.5)
    assert lecam_regularizer(torch.tensor(-1.0), torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0)).item() == 0.0


def test_alignment_margin_hinge() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cos 1 and 0
    # margin 0.25: relu(0.75 - 1) = 0, relu(0.75 - 0) = 0.75 -> mean 0.375
    assert alignment_loss(a, b, 0.25).item() == pytest.approx(0.375)
    c = torch.tensor([[math.cos(0.5), math.sin(0.5)]])  # cos 0.8776 > 0.75: no loss
    assert alignment_loss(c, a[:1], 0.25).item() == 0.0


def test_patch_alignment_resizes_teacher() -> None:
    s = torch.randn(2, 5, 4, 4)
    same = patch_alignment_loss(s, s.clone(), 0.25)
    assert same.item() == 0.0
    t = torch.randn(2, 5, 8, 8)
    expect = alignment_loss(
        s.permute(0, 2, 3, 1), F.interpolate(t, size=(4, 4), mode="bilinear").permute(0, 2, 3, 1), 0.25
    )
    assert patch_alignment_loss(s, t, 0.25).item() == pytest.approx(expect.item())


def test_diff_augment_off_on_and_seeded() -> None:
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    assert torch.equal(diff_augment(x, torch.Generator().manual_seed(0), prob=0.0), x)
    a = diff_augment(x, torch.Generator().manual_seed(1), prob=1.0)
    b = diff_augment(x, torch.Generator().manual_seed(1), prob=1.0)
    assert torch.equal(a, b) and not torch.allclose(a, x)
    a.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_diff_augment_translation_zero_fill() -> None:
    """On a constant image colour jitter keeps it constant; translation then only adds a zero border."""
    x = torch.ones(6, 3, 16, 16)
    y = diff_augment(x, torch.Generator().manual_seed(3), prob=1.0, cutout=0.0)
    shifted = 0
    for img in y:
        vals = torch.unique(img)
        assert len(vals) <= 2 and (len(vals) == 1 or vals[0] == 0)
        if len(vals) == 2:
            shifted += 1
            nz = (img[0] != 0).nonzero()
            h = nz[:, 0].max() - nz[:, 0].min() + 1
            w = nz[:, 1].max() - nz[:, 1].min() + 1
            assert h * w == len(nz)  # the kept part is one rectangle
    assert shifted >= 1


def test_batchnorm_local_uses_virtual_batches() -> None:
    bn = BatchNormLocal(3, virtual_bs=2)
    x = torch.randn(4, 3, 5)
    x[2:] = x[2:] * 10 + 7  # second virtual batch has other statistics
    y = bn(x)
    for g in (y[:2], y[2:]):
        assert g.mean(dim=(0, 2)).abs().max() < 1e-5
        assert (g.var(dim=(0, 2), unbiased=False) - 1).abs().max() < 1e-3


def test_lpips_jitter_same_for_both_and_identity_when_off() -> None:
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    a, b = lpips_jitter(x, x.clone(), torch.Generator().manual_seed(0), 2)
    assert torch.equal(a, b) and a.shape == x.shape
    a, b = lpips_jitter(x, y, None, 0)
    assert a is x and b is y


def _save(state: dict, path) -> str:
    torch.save(state, path)
    return str(path)


def test_real_lpips_loads_from_local_files(tmp_path) -> None:
    """VGG16 and lin weights in torchvision/LPIPS key layout, random values made here, through the real path."""
    ref = LPIPS()
    vgg = _save({k: torch.randn_like(v) * 0.05 for k, v in ref.net.state_dict().items()}, tmp_path / "vgg16.pth")
    lins = _save(
        {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(ref.net.channels)}, tmp_path / "vgg.pth"
    )
    m = build_lpips("vgg16", vgg, lins)
    assert not any(p.requires_grad for p in m.parameters())
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.allclose(m(x, x), torch.zeros(2), atol=1e-7)
    assert (m(x, y) > 0).all()
    with pytest.raises(BackboneError, match="does not exist"):
        build_lpips("vgg16", str(tmp_path / "nope.pth"), lins)
    bad = _save({f"lin{i}.model.1.weight": torch.rand(1, 3, 1, 1) for i in range(5)}, tmp_path / "bad.pth")
    with pytest.raises(BackboneError, match="wrong shape"):
        build_lpips("vgg16", vgg, bad)


def test_dino_backbone_from_file_zeroes_k_bias_and_discriminator_shape(tmp_path) -> None:
    ref = ViT(224, 16, 384, 12, 6)
    state = {k: torch.randn_like(v) * 0.02 for k, v in ref.state_dict().items()}
    path = _save(state, tmp_path / "dino_deitsmall16_pretrain.pth")
    vit = build_dino_backbone("dino-vits16", path)
    qkv_b = vit.blocks[0].attn.qkv.bias
    assert torch.equal(qkv_b[384:768], torch.zeros(384)) and torch.equal(
        qkv_b[:384], state["blocks.0.attn.qkv.bias"][:384]
    )
    disc = DinoDiscriminator(vit)
    assert disc.taps == (-1, 2, 5, 8, 11)
    out = disc(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 5 * 196)
    trainable = sum(p.numel() for p in disc.parameters() if p.requires_grad)
    assert trainable == 7_386_245  # the official DinoDisc's trainable parameter count (spec §2.3)


def test_teacher_features_shapes() -> None:
    t = build_feature_teacher("vit-tiny")
    cls, patches = t(torch.rand(2, 3, 32, 32))
    assert cls.shape == (2, 64) and patches.shape == (2, 64, 8, 8)
    with pytest.raises(BackboneError, match="unknown"):
        build_dino_backbone("resnet")


def test_dinov3_teacher_from_local_file_offline(tmp_path, monkeypatch) -> None:
    """The DINOv3 teacher's timm path loads a local weights file with the Hub unreachable (ViT-S/16 here: the
    ViT-L/16 of the paper goes through the same code with another timm name)."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from restok.train.backbones import DINOV3_TIMM_NAMES

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    ref = timm.create_model(DINOV3_TIMM_NAMES["dinov3-vits16"], pretrained=False, dynamic_img_size=True).eval()
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "dinov3_s.safetensors"))
    teacher = build_feature_teacher("dinov3-vits16", str(tmp_path / "dinov3_s.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), teacher.net.state_dict().values()))
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.rand(2, 3, 32, 48)
    cls, patches = teacher(x)
    h = ref.forward_features((x - teacher.mean) / teacher.std)  # CLS, 4 registers, then the 2 x 3 patches
    assert cls.shape == (2, 384) and patches.shape == (2, 384, 2, 3)
    assert torch.allclose(cls, h[:, 0], atol=1e-5)
    assert torch.allclose(patches[:, :, 1, 2], h[:, -1], atol=1e-5)  # row-major patch order
    with pytest.raises(BackboneError, match="does not exist"):
        build_feature_teacher("dinov3-vitl16", str(tmp_path / "missing.safetensors"))


def test_tokenizer_loss_state_roundtrip_and_lecam_ema() -> None:
    cfg = TokenizerLossConfig(
        perceptual_network="vgg16-tiny",
        discriminator_backbone="vit-tiny",
        alignment_teacher="vit-tiny",
        discriminator_start=0,
        lecam_decay=0.5,
    )
    loss = TokenizerLoss(cfg)
    x, r = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    d, logs = loss(x, r, torch.Generator().manual_seed(0))
    assert torch.isfinite(d)
    assert loss.ema_real_logits_mean.item() == pytest.approx(0.5 * logs["d_real"], rel=1e-5)
    state = loss.saved_state()
    assert not any(k.startswith(("lpips.", "teacher.", "discriminator.backbone.")) for k in state)
    other = TokenizerLoss(cfg)
    other.load_saved_state(state)
    assert other.ema_real_logits_mean.item() == loss.ema_real_logits_mean.item()
    with pytest.raises(ValueError, match="does not fit"):
        other.load_saved_state({k: v for k, v in state.items() if "ema_real" not in k})
