"""The tokenizer's training objective (Sec. 3.4, Eq. 4) and its pieces, following the official recipe.

L_G = w_rec MSE + w_p LPIPS + w_q (commitment + codebook) + w_d f(step) (-E[D(aug(x_hat))]) + w_a (L_enc + L_dec)
L_D = f(step) 1/2 (E[relu(1 - D(aug(x)))] + E[relu(1 + D(aug(x_hat)))]) + w_lecam LeCam

Every random draw takes an explicit ``torch.Generator`` so that a training step is a pure function of its
seed (exact resume, and 1-process == N-process runs).

Axes: B batch, C channels, N tokens, F teacher feature size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.fields import Config, check_field_types, setting
from .backbones import IMAGENET_MEAN, IMAGENET_STD, ViT, build_dino_backbone, build_feature_teacher, build_lpips

if TYPE_CHECKING:
    from ..models.restok import ResTokOutput

__all__ = [
    "diff_augment",
    "hinge_d_loss",
    "hinge_g_loss",
    "lecam_regularizer",
    "alignment_loss",
    "patch_alignment_loss",
    "lpips_jitter",
    "DinoDiscriminator",
    "TokenizerLossConfig",
    "TokenizerLoss",
]


def _rand(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) on the CPU generator, moved to ``device`` (same numbers on every device)."""
    return torch.rand(shape, generator=gen).to(device)


def _randint(
    lo: int, hi: int, shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return torch.randint(lo, hi, shape, generator=gen).to(device)


# ------------------------------------------------------------------------------------------- DiffAugment
def diff_augment(
    x: torch.Tensor,
    gen: torch.Generator | None,
    prob: float = 0.5,
    translation: float = 0.125,
    cutout: float = 0.2,
) -> torch.Tensor:
    """DiffAugment ``color,translation,cutout`` (Zhao et al. 2020) as the official discriminator uses it.

    Each of the three groups is applied to the whole batch with probability ``prob``; the parameters are
    drawn per sample. Differentiable in ``x``.
    """
    B, _, H, W = x.shape
    dev = x.device
    if float(_rand((1,), gen, dev)) < prob:  # colour: brightness, saturation, contrast
        x = x + (_rand((B, 1, 1, 1), gen, dev) - 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand((B, 1, 1, 1), gen, dev) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (_rand((B, 1, 1, 1), gen, dev) + 0.5) + mean
    if float(_rand((1,), gen, dev)) < prob:  # translation by integers, zero fill
        sh, sw = int(H * translation + 0.5), int(W * translation + 0.5)
        ty = _randint(-sh, sh + 1, (B, 1, 1), gen, dev)
        tx = _randint(-sw, sw + 1, (B, 1, 1), gen, dev)
        gy = (torch.arange(H, device=dev).view(1, H, 1) + ty + 1).clamp(0, H + 1)  # (B, H, 1)
        gx = (torch.arange(W, device=dev).view(1, 1, W) + tx + 1).clamp(0, W + 1)  # (B, 1, W)
        padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C), zero border
        b = torch.arange(B, device=dev).view(B, 1, 1)
        x = padded[b, gy, gx].permute(0, 3, 1, 2)  # (B, C, H, W)
    if float(_rand((1,), gen, dev)) < prob:  # cutout of one square per sample
        ch, cw = int(H * cutout + 0.5), int(W * cutout + 0.5)
        oy = _randint(0, H + (1 - ch % 2), (B, 1, 1), gen, dev)
        ox = _randint(0, W + (1 - cw % 2), (B, 1, 1), gen, dev)
        ys = torch.arange(H, device=dev).view(1, H, 1)
        xs = torch.arange(W, device=dev).view(1, 1, W)
        inside = (ys >= oy - ch // 2) & (ys < oy - ch // 2 + ch) & (xs >= ox - cw // 2) & (xs < ox - cw // 2 + cw)
        x = x * (~inside).unsqueeze(1).to(x.dtype)
    return x


# ------------------------------------------------------------------------------------------- GAN losses
def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss: 1/2 (E[relu(1 - D(x))] + E[relu(1 + D(x_hat))])."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: -E[D(x_hat)]."""
    return -fake_logits.mean()


def lecam_regularizer(
    real_mean: torch.Tensor, fake_mean: torch.Tensor, ema_real: torch.Tensor, ema_fake: torch.Tensor
) -> torch.Tensor:
    """LeCam regularisation (Tseng et al. 2021): relu(mean D(x) - ema_fake)^2 + relu(ema_real - mean D(x_hat))^2."""
    return F.relu(real_mean - ema_fake).pow(2).mean() + F.relu(ema_real - fake_mean).pow(2).mean()


# ------------------------------------------------------------------------------------------- alignment
def alignment_loss(student: torch.Tensor, teacher: torch.Tensor, margin: float) -> torch.Tensor:
    """Margin cosine loss over the last axis: mean relu(1 - margin - cos(student, teacher)) (VA-VAE style)."""
    cos = F.cosine_similarity(student.float(), teacher.float(), dim=-1)
    return F.relu(1.0 - margin - cos).mean()


def patch_alignment_loss(student: torch.Tensor, teacher: torch.Tensor, margin: float) -> torch.Tensor:
    """:func:`alignment_loss` per position of (B, F, h, w) maps (the teacher is resized to the student's grid)."""
    if teacher.shape[-2:] != student.shape[-2:]:
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear", align_corners=False)
    return alignment_loss(student.permute(0, 2, 3, 1), teacher.permute(0, 2, 3, 1), margin)


def lpips_jitter(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator | None, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official training-time LPIPS augmentation, the same for both images: replicate-pad ``pad`` px,
    crop with independent random trims in [0, pad] on each side, bicubic resize back."""
    if pad <= 0:
        return x, y
    H, W = x.shape[-2:]
    top, left, bottom, right = (int(v) for v in torch.randint(0, pad + 1, (4,), generator=gen))
    both = F.pad(torch.cat([x, y]), (pad, pad, pad, pad), mode="replicate")
    both = both[..., top : H + 2 * pad - bottom, left : W + 2 * pad - right]
    both = F.interpolate(both, size=(H, W), mode="bicubic", align_corners=False)
    return both.chunk(2)


# ------------------------------------------------------------------------------------------- discriminator
class BatchNormLocal(nn.Module):
    """Batch norm over virtual batches of ``virtual_bs`` samples, no running statistics (StyleGAN-T)."""

    def __init__(self, channels: int, virtual_bs: int = 8, eps: float = 1e-6) -> None:
        super().__init__()
        self.virtual_bs, self.eps = virtual_bs, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, N) -> (B, C, N)."""
        groups = math.ceil(x.shape[0] / self.virtual_bs)
        out = []
        for g in torch.tensor_split(x, groups):  # (b, C, N)
            mean = g.mean(dim=(0, 2), keepdim=True)
            var = g.var(dim=(0, 2), keepdim=True, unbiased=False)
            out.append((g - mean) / torch.sqrt(var + self.eps))
        return torch.cat(out) * self.weight.view(1, -1, 1) + self.bias.view(1, -1, 1)


def _sn_conv(cin: int, cout: int, k: int) -> nn.Module:
    """Spectral-normalised circular Conv1d (one power iteration)."""
    conv = nn.Conv1d(cin, cout, k, padding=k // 2, padding_mode="circular")
    return nn.utils.parametrizations.spectral_norm(conv, n_power_iterations=1, eps=1e-12)


class _Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fn(x) + x) / math.sqrt(2)


def _disc_head(c: int) -> nn.Sequential:
    return nn.Sequential(
        _sn_conv(c, c, 1),
        BatchNormLocal(c),
        nn.LeakyReLU(0.2),
        _Residual(nn.Sequential(_sn_conv(c, c, 9), BatchNormLocal(c), nn.LeakyReLU(0.2))),
        _sn_conv(c, 1, 1),
    )


class DinoDiscriminator(nn.Module):
    """Frozen DINO ViT with five trainable spectral-norm heads on its token readouts (StyleGAN-T style).

    Readouts: before the first block and after each quarter of the depth (blocks 2, 5, 8, 11 of ViT-S),
    patch tokens plus the CLS token. Output: (B, 5 N) logits.
    """

    def __init__(self, backbone: ViT) -> None:
        super().__init__()
        self.backbone = backbone
        d = backbone.depth
        self.taps = (-1,) + tuple(round((i + 1) * d / 4) - 1 for i in range(4))
        self.heads = nn.ModuleList([_disc_head(backbone.dim) for _ in self.taps])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1] (B, 3, H, W) -> logits (B, 5 N)."""
        size = self.backbone.img_size
        x = (x.float() - self.mean) / self.std
        if x.shape[-1] > size:  # half the time one random crop for the whole batch, else area downsampling
            if float(torch.rand(1, generator=gen)) < 0.5:
                top = int(torch.randint(0, x.shape[-2] - size + 1, (1,), generator=gen))
                left = int(torch.randint(0, x.shape[-1] - size + 1, (1,), generator=gen))
                x = x[..., top : top + size, left : left + size]
            else:
                x = F.interpolate(x, size=(size, size), mode="area")
        elif x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        logits = []
        for h, head in zip(self.backbone(x, self.taps), self.heads):
            feats = (h[:, 1:] + h[:, :1]).transpose(1, 2)  # (B, D, N): patch tokens + CLS
            logits.append(head(feats).flatten(1))  # (B, N)
        return torch.cat(logits, dim=1)  # (B, 5N)


# ------------------------------------------------------------------------------------------- the objective
@dataclass(frozen=True)
class TokenizerLossConfig(Config):
    """Weights and networks of Eq. 4; the defaults are the official recipe (spec: losses.py)."""

    reconstruction_weight: float = setting(1.0, ge=0, le=1e6)  # MSE
    perceptual_weight: float = setting(1.0, ge=0, le=1e6)  # LPIPS; 0 = off (no network built)
    perceptual_network: str = "vgg16"  # vgg16 | vgg16-tiny
    perceptual_vgg_weights: str | None = None  # local torchvision vgg16 .pth; None = download
    perceptual_lin_weights: str | None = None  # local LPIPS vgg.pth; None = download
    perceptual_jitter: int = setting(15, ge=0, le=1024)  # px of random pad/crop at 256 px, scaled with the image size
    quantizer_weight: float = setting(1.0, ge=0, le=1e6)
    discriminator_weight: float = setting(0.5, ge=0, le=1e6)  # 0 = no GAN (no network built)
    discriminator_start: int = setting(20_000, ge=0, le=10**12)  # step at which the GAN terms and D's training start
    discriminator_backbone: str = "dino-vits16"  # dino-vits16 | vit-tiny
    discriminator_weights: str | None = None
    diffaug_prob: float = setting(0.5, ge=0, le=1)
    lecam_weight: float = setting(0.001, ge=0, le=1e6)
    lecam_decay: float = setting(0.999, ge=0, le=1)
    alignment_weight: float = setting(1.0, ge=0, le=1e6)  # 0 = no alignment (no teacher built)
    alignment_margin: float = setting(0.25, ge=0, le=2)  # hinge at cos = 1 - margin
    encoder_alignment: bool = True  # coarsest image tokens vs the teacher's CLS
    decoder_alignment: bool = True  # decoder feature queries vs the teacher's patch tokens
    alignment_teacher: str = "dinov3-vitl16"  # dinov3-vitl16 | dinov3-vits16 | dino-vits16 | vit-tiny
    alignment_weights: str | None = None
    # TiTok's stage 1 (a two-stage TiTok): the MaskGIT VQGAN teacher's weights; the objective is then TiTok's
    # ReconstructionLoss_Stage1 -- cross-entropy of the decoder's code logits against the teacher's codes, plus the
    # quantizer loss -- and the pixel terms are not used
    proxy_teacher: str | None = None

    config_name = "tokenizer loss"

    def __post_init__(self) -> None:
        check_field_types(self)

    @property
    def use_gan(self) -> bool:
        """Whether the GAN terms are on (a discriminator is built)."""
        return self.discriminator_weight > 0

    @property
    def use_alignment(self) -> bool:
        """Whether representation alignment is on (a teacher is built)."""
        return self.alignment_weight > 0 and (self.encoder_alignment or self.decoder_alignment)


class TokenizerLoss(nn.Module):
    """Holds the frozen networks, the trainable discriminator heads and the LeCam EMAs."""

    def __init__(self, cfg: TokenizerLossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        pixels = cfg.proxy_teacher is None  # TiTok's stage 1 learns codes, not pixels: no perceptual or GAN network
        self.lpips = (
            build_lpips(cfg.perceptual_network, cfg.perceptual_vgg_weights, cfg.perceptual_lin_weights)
            if cfg.perceptual_weight > 0 and pixels
            else None
        )
        self.discriminator = (
            DinoDiscriminator(build_dino_backbone(cfg.discriminator_backbone, cfg.discriminator_weights))
            if cfg.use_gan and pixels
            else None
        )
        self.proxy: nn.Module | None = None  # the MaskGIT VQGAN teacher of TiTok's stage 1 (set_proxy_teacher)
        self.teacher = (
            build_feature_teacher(cfg.alignment_teacher, cfg.alignment_weights) if cfg.use_alignment else None
        )
        self.register_buffer("ema_real_logits_mean", torch.zeros(()))
        self.register_buffer("ema_fake_logits_mean", torch.zeros(()))

    @property
    def teacher_dim(self) -> int:
        """Feature size F the tokenizer's projection heads must produce (0 without alignment)."""
        return self.teacher.dim if self.teacher is not None else 0

    def set_proxy_teacher(self, teacher: nn.Module) -> None:
        """TiTok's stage 1: the frozen teacher whose codes (``proxy_codes``) the decoder's logits learn."""
        self.proxy = teacher

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms count at ``step`` (0-based count of finished steps)."""
        return self.discriminator is not None and step >= self.cfg.discriminator_start

    def saved_state(self) -> dict[str, torch.Tensor]:
        """Trainable heads and LeCam EMAs: what a checkpoint must keep (frozen networks are rebuilt)."""
        frozen = ("lpips.", "teacher.", "discriminator.backbone.", "proxy.")
        return {k: v for k, v in self.state_dict().items() if not k.startswith(frozen)}

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`saved_state`; names the keys that do not fit."""
        own = self.saved_state()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"loss-module state does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.load_state_dict(state, strict=False)

    def generator_loss(
        self, images: torch.Tensor, out: ResTokOutput, step: int, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 4 for the tokenizer's update; ``out`` is a ``ResTokOutput``. Returns (loss, logged terms)."""
        cfg = self.cfg
        x, x_hat = images.float(), out.reconstruction.float()
        logs: dict[str, torch.Tensor] = {}
        if self.proxy is not None:
            return self._proxy_loss(x, out)
        with torch.autocast(device_type=x.device.type, enabled=False):  # the official loss runs in fp32
            logs["mse"] = F.mse_loss(x_hat, x)
            total = cfg.reconstruction_weight * logs["mse"]
            if self.lpips is not None:
                pad = round(cfg.perceptual_jitter * x.shape[-1] / 256)
                a, b = lpips_jitter(x, x_hat, gen, pad)
                logs["lpips"] = self.lpips(b, a).mean()
                total = total + cfg.perceptual_weight * logs["lpips"]
            logs["quantizer"] = out.quantizer_loss.float()
            if bool(out.entropy_loss.detach() != 0):  # the official entropy term, when entropy_loss_ratio > 0
                logs["entropy"] = out.entropy_loss.float()
            total = total + cfg.quantizer_weight * logs["quantizer"]
            if self.gan_active(step):
                fake = self.discriminator(diff_augment(x_hat, gen, cfg.diffaug_prob), gen)
                logs["gan_g"] = hinge_g_loss(fake)
                total = total + cfg.discriminator_weight * logs["gan_g"]
            if self.teacher is not None:
                cls, patches = self.teacher(x)
                if cfg.encoder_alignment:
                    logs["align_enc"] = alignment_loss(out.encoder_features, cls, cfg.alignment_margin)
                    total = total + cfg.alignment_weight * logs["align_enc"]
                if cfg.decoder_alignment:
                    logs["align_dec"] = patch_alignment_loss(out.decoder_features, patches, cfg.alignment_margin)
                    total = total + cfg.alignment_weight * logs["align_dec"]
        logs["total"] = total
        return total, {k: float(v.detach()) for k, v in logs.items()}

    def _proxy_loss(self, x: torch.Tensor, out: ResTokOutput) -> tuple[torch.Tensor, dict[str, float]]:
        """TiTok's stage 1 (1d-tokenizer's ReconstructionLoss_Stage1): cross-entropy of the decoder's logits over the
        teacher's codebook against the teacher's codes of the same images, plus the weighted quantizer loss."""
        if out.code_logits is None:
            raise ValueError("loss.proxy_teacher needs a two-stage TiTok, whose decoder gives code logits")
        target = self.proxy.proxy_codes(x)  # (B, g, g)
        with torch.autocast(device_type=x.device.type, enabled=False):
            logs = {"proxy_ce": F.cross_entropy(out.code_logits.float().flatten(2), target.flatten(1))}
            logs["quantizer"] = out.quantizer_loss.float()
            total = logs["proxy_ce"] + self.cfg.quantizer_weight * logs["quantizer"]
            logs["mse"] = F.mse_loss(out.reconstruction.detach().float(), x)  # logged only: the teacher's decoder
        logs["total"] = total
        return total, {k: float(v.detach()) for k, v in logs.items()}

    def forward(
        self, images: torch.Tensor, reconstruction: torch.Tensor, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The discriminator's loss (the module is wrapped for data parallelism around this call)."""
        return self.discriminator_loss(images, reconstruction, gen)

    def discriminator_loss(
        self, images: torch.Tensor, reconstruction: torch.Tensor, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss + LeCam for the discriminator heads on detached reconstructions; updates the EMAs."""
        cfg = self.cfg
        with torch.autocast(device_type=images.device.type, enabled=False):
            real = self.discriminator(diff_augment(images.float(), gen, cfg.diffaug_prob), gen)
            fake = self.discriminator(diff_augment(reconstruction.detach().float(), gen, cfg.diffaug_prob), gen)
            d = hinge_d_loss(real, fake)
            real_mean, fake_mean = real.mean(), fake.mean()
            lecam = lecam_regularizer(real_mean, fake_mean, self.ema_real_logits_mean, self.ema_fake_logits_mean)
            loss = d + cfg.lecam_weight * lecam
        with torch.no_grad():
            decay = cfg.lecam_decay
            self.ema_real_logits_mean.mul_(decay).add_((1 - decay) * real_mean.detach())
            self.ema_fake_logits_mean.mul_(decay).add_((1 - decay) * fake_mean.detach())
        logs = {
            "d_hinge": float(d.detach()),
            "lecam": float(lecam.detach()),
            "d_real": float(real_mean.detach()),
            "d_fake": float(fake_mean.detach()),
        }
        return loss, logs
