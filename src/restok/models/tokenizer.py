"""What every image tokenizer of restok is, whatever its family: images in [0, 1] <-> discrete token ids.

:class:`Tokenizer` holds the contract the rest of the package relies on (the command line, the pipeline, the
evaluation protocols and the web demo never ask which family they hold): ``encode`` (B, 3, S, S) float images in
[0, 1] to (B, L) int64 ids, ``decode`` ids (B, k) back to float32 images clamped to [0, 1], the lengths ``k`` that
decode (:attr:`prefix_lengths`: every nested prefix of ResTok or One-D-Piece, only ``L`` for TiTok and 2-D grid
tokenizers), and the checks of inputs with one message each. A family supplies :meth:`encode_ids` and
:meth:`decode_ids` (the unchecked computations, which the compiled decode also traces) and its facts; to train, its
training forward (:meth:`forward`, a :class:`~restok.models.training.TokenizerOutput`) and its
:class:`~restok.models.training.TrainingHook` (:mod:`restok.models.training`).

Axes: B batch, L tokens, k kept tokens, S image side.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from ..core.hierarchy import parse_prefix_spec, select_prefixes
from ..hub.pretrained import PretrainedModel
from ..runtime.precision import DTYPES, autocast_to
from ..runtime.requests import RequestError, field
from ..sampling.compiled import CompiledDecoder
from .training import TokenizerOutput, TrainingHook

__all__ = ["Tokenizer", "PIXEL_DTYPES", "check_pixel_dtype", "TokenizerOutput", "TrainingHook"]

PIXEL_DTYPES = tuple(DTYPES.values())


def check_pixel_dtype(dtype: torch.dtype) -> torch.dtype:
    """The pixel decoder's precision, or a ValueError naming the allowed ones."""
    if dtype not in PIXEL_DTYPES:
        raise ValueError(f"pixel_dtype must be one of {[str(d) for d in PIXEL_DTYPES]}, got {dtype!r}")
    return dtype


class Tokenizer(PretrainedModel, metaclass=ABCMeta):
    """Base of every tokenizer family: the checked ``encode``/``decode`` around a family's own computations."""

    kind = "tokenizer"
    # Whether any prefix ids[:, :k] of the ids decodes (ResTok, One-D-Piece) or only the full sequence (TiTok, a
    # 2-D grid in raster order, where a prefix is the top rows of the image and nothing else).
    nested: bool = False

    config: Any
    pixel_dtype: torch.dtype = torch.float32
    # How restok's tokenizer trainer trains this family (None: it does not train)
    training_hook: TrainingHook | None = None

    # -------------------------------------------------------------------------------- facts
    @property
    def num_tokens(self) -> int:
        """L, the full token count."""
        return self.config.num_tokens

    @property
    def prefix_lengths(self) -> tuple[int, ...]:
        """The token budgets this tokenizer decodes and reports, shortest first (``(L,)`` when not nested)."""
        return (self.num_tokens,)

    @property
    def codebook_size(self) -> int:
        """Number of codes (a generator's vocabulary)."""
        return self.config.codebook_size

    def decodable(self, k: int) -> bool:
        """Whether ``k`` leading ids decode (by default: the lengths of :attr:`prefix_lengths`)."""
        return k in self.prefix_lengths

    def describe_lengths(self) -> str:
        """The decodable lengths in words, for messages."""
        return f"allowed prefix lengths are {list(self.prefix_lengths)}"

    def select_lengths(self, tokens: int | str | Sequence[int] | None) -> list[int]:
        """The prefix lengths ``tokens`` asks for, shortest first: None (every token), a number, ``"all"`` (every
        budget), or a list (or comma list) of them; a RequestError naming ``tokens`` refuses what does not decode."""
        try:
            spec = parse_prefix_spec(tokens)  # type: ignore[arg-type]
        except ValueError as e:
            raise RequestError(f"{field('tokens')} {e}") from None
        try:
            return select_prefixes(spec, tuple(self.prefix_lengths), self.decodable, self.describe_lengths())
        except ValueError as e:
            raise RequestError(f"{field('tokens')}: {e}") from None

    # -------------------------------------------------------------------------------- what a family supplies
    @abstractmethod
    def encode_ids(self, images: torch.Tensor) -> torch.Tensor:
        """Checked images (B, 3, S, S) in [0, 1] -> ids (B, L) int64, without validation."""

    @abstractmethod
    def decode_ids(self, ids: torch.Tensor, k: int, pixel_dtype: torch.dtype) -> torch.Tensor:
        """Checked ids (B, k) on the model's device -> clamped float32 pixels (B, 3, S, S), without validation."""

    @abstractmethod
    def forward(
        self,
        images: torch.Tensor,
        kept_tokens: int | Sequence[int] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> TokenizerOutput:
        """The training forward: images (B, 3, S, S) in [0, 1] -> the unclamped reconstruction from the kept prefix
        of each sample (drawn by :meth:`sample_kept_tokens` in training mode when not given), the ids and the
        quantizer's loss terms."""

    def sample_kept_tokens(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The prefix length each of ``batch`` training samples decodes (B,) int64: every token, unless the family
        trains its prefixes (ResTok's nested dropout, One-D-Piece's tail-token drop)."""
        return torch.full((batch,), self.num_tokens, dtype=torch.long)

    def level_bounds(self) -> list[tuple[int, int]]:
        """``[(start, end), ...]`` of the token groups whose codebook usage training reports apart (a group that
        collapses alone is named): between consecutive budgets of :attr:`prefix_lengths` by default."""
        edges = [0, *self.prefix_lengths]
        return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]

    @classmethod
    def activation_shapes(cls, config: Any) -> tuple[list[tuple[int, int, int, int]], int]:
        """What one training image's activations are made of, for the memory estimate: the transformers as
        ``(sequence, width, heads, layers)`` and the CNNs' activation elements (16-bit units, kept for backward)."""
        return [], 0

    def inference_config(self) -> Any:
        """The config of the inference model a trained one exports (training-only heads dropped; by default the
        config itself)."""
        return self.config

    @torch.no_grad()
    def preview_rows(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Reconstructions of ``images`` from each budget of :attr:`prefix_lengths`, clamped (a training preview)."""
        ids = self.encode_ids(self._check_images(images))
        return [self.decode_ids(ids[:, :k], k, torch.float32) for k in self.prefix_lengths]

    def _kept(self, kept_tokens: int | Sequence[int] | torch.Tensor | None, batch: int, generator: Any) -> torch.Tensor:
        """The (B,) kept prefix lengths of a training forward: given, drawn (training mode) or every token."""
        if kept_tokens is None:
            return self.sample_kept_tokens(batch, generator) if self.training else self.sample_all(batch)
        t = torch.as_tensor(kept_tokens, dtype=torch.long).reshape(-1)
        t = t.expand(batch) if t.numel() == 1 else t
        if t.numel() != batch:
            raise ValueError(f"got {t.numel()} kept-token counts for a batch of {batch}")
        bad = sorted({int(v) for v in t.tolist() if not self.decodable(int(v))})
        if bad:
            raise ValueError(f"kept token counts {bad} do not decode; {self.describe_lengths()}")
        return t

    def sample_all(self, batch: int) -> torch.Tensor:
        """Every token for each of ``batch`` samples (B,)."""
        return torch.full((batch,), self.num_tokens, dtype=torch.long)

    def pixel_head(self, feats: torch.Tensor) -> torch.Tensor:
        """The CNN that turns features into pixels (default ``self.pixel_decoder``; a family with another layout says
        which modules it is)."""
        return self.pixel_decoder(feats)

    # -------------------------------------------------------------------------------- the contract
    def _autocast(self, dtype: torch.dtype | None) -> Any:
        """Autocast of the transformer parts to ``dtype`` (None: off); quantizers and pixel decoders set their own."""
        if dtype is not None and dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be torch.bfloat16 or torch.float16 (or None), got {dtype!r}")
        return autocast_to(self.device, dtype)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, autocast: torch.dtype | None = None) -> torch.Tensor:
        """Images (B, 3, S, S) float in [0, 1] -> token ids (B, L) int64 (nested tokenizers: any prefix decodes).

        ``autocast=torch.bfloat16`` runs the networks in bf16 with float32 weights (nearest-code searches stay
        float32); ids can differ from float32 where two codes are nearly equidistant.
        """
        images = self._check_images(images)
        with self._autocast(autocast):
            return self.encode_ids(images)

    @torch.no_grad()
    def decode(
        self,
        ids: torch.Tensor,
        pixel_dtype: torch.dtype | None = None,
        *,
        autocast: torch.dtype | None = None,
        compile: bool | str = False,
    ) -> torch.Tensor:
        """Token ids (B, k), k a decodable length -> float32 images (B, 3, S, S) clamped to [0, 1].

        Args:
            pixel_dtype: the CNN pixel decoder's precision (default :attr:`pixel_dtype`, float32); it holds under
                ``autocast`` too.
            autocast: ``torch.bfloat16`` (or ``float16``) runs the transformer decoder under autocast.
            compile: ``True`` runs the decode as one ``torch.compile`` graph per (batch size, k) (CUDA graphs on
                CUDA; :class:`~restok.sampling.CompiledDecoder`); a string picks the mode.
        """
        ids = self._check_ids(ids).to(self.device)
        pixel_dtype = check_pixel_dtype(self.pixel_dtype if pixel_dtype is None else pixel_dtype)
        if ids.shape[0] == 0:  # no images: an empty batch of them (as slicing an empty batch gives)
            S = self.config.image_size
            return torch.empty(0, 3, S, S, device=ids.device)
        with self._autocast(autocast):
            if compile:
                images = CompiledDecoder(self, compile)(ids, ids.shape[1], pixel_dtype)
            else:
                images = self.decode_ids(ids, ids.shape[1], pixel_dtype)
        if not bool(torch.isfinite(images).all()):  # clamp keeps NaN: without this they become black images
            raise ValueError(
                "the decoded images hold NaN or infinite values: the tokenizer's weights overflow at this "
                "precision, or are damaged; nothing was decoded"
            )
        return images

    # -------------------------------------------------------------------------------- validation
    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        """Raise a ValueError naming the problem unless ``images`` is float (B, 3, S, S) in [0, 1]."""
        S = self.config.image_size
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"images must be a torch.Tensor of shape [B, 3, {S}, {S}], got {type(images).__name__}")
        if images.dim() != 4:
            raise ValueError(f"images must have shape [B, 3, {S}, {S}], got {list(images.shape)} (rank {images.dim()})")
        if not images.is_floating_point():
            raise ValueError(
                f"images must be a float tensor with values in [0, 1], got dtype {images.dtype}"
                + (" (divide uint8 images by 255)" if images.dtype == torch.uint8 else "")
            )
        if images.shape[1] != 3:
            raise ValueError(f"images must have 3 (RGB) channels, got {images.shape[1]} in shape {list(images.shape)}")
        if tuple(images.shape[-2:]) != (S, S):
            raise ValueError(
                f"this tokenizer takes {S}x{S} images, got {images.shape[-2]}x{images.shape[-1]}; resize/crop first"
            )
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch")
        lo, hi = float(images.min()), float(images.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("images contain NaN or Inf values")
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(
                f"images must have values in [0, 1], got range [{lo:.3f}, {hi:.3f}]"
                + (" (they look ImageNet-normalised or in [-1, 1]; pass raw [0, 1] pixels)" if lo < 0 else "")
            )
        return images

    def _check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Raise a ValueError unless ``ids`` is an integer (B, k) tensor of codes with a decodable k."""
        if not isinstance(ids, torch.Tensor):
            raise ValueError(f"token ids must be a torch.Tensor of shape [B, k], got {type(ids).__name__}")
        if ids.dim() == 3 and ids.shape[1] == 1:
            ids = ids[:, 0]
        if ids.dim() != 2:
            raise ValueError(f"token ids must have shape [B, k], got {list(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"token ids must be an integer tensor, got dtype {ids.dtype}")
        k = ids.shape[1]
        if not self.decodable(k):
            raise ValueError(f"cannot decode {k} tokens; {self.describe_lengths()}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(
                f"token ids must be in [0, {self.codebook_size}), got range [{int(ids.min())}, {int(ids.max())}]"
            )
        return ids.long()

    def _pixel_decode(self, feats: torch.Tensor, pixel_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The family's CNN pixel decoder (:meth:`pixel_head`) in ``pixel_dtype`` -> float32 pixels; float32 runs
        outside any autocast, as the official codes run it."""
        if pixel_dtype == torch.float32:
            with torch.autocast(device_type=feats.device.type, enabled=False):
                return self.pixel_head(feats.float())  # (B, 3, H, W)
        with torch.autocast(device_type=feats.device.type, dtype=pixel_dtype):
            return self.pixel_head(feats).float()  # (B, 3, H, W)
