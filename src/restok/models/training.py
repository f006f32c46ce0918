"""What a tokenizer family declares so that restok's one tokenizer trainer (:mod:`restok.train.tokenizer`) trains it.

Every family's training forward returns a :class:`TokenizerOutput` -- the unclamped reconstruction, the ids, the
quantizer's loss terms and what the optional regularisers read -- so that one objective (Eq. 4: reconstruction,
perceptual, quantizer, GAN, and for ResTok the representation alignment) serves them all. What differs between
families is declared once, in the family's module, as its :class:`TrainingHook`: the repeated blocks (the units of
FSDP sharding and activation checkpointing), whether it has alignment heads, which of its parts train, and what it
cannot train (TiTok's two-stage decoder needs the MaskGIT VQGAN teacher's proxy codes). How the decoded prefix is
drawn during training is the model's own :meth:`~restok.models.tokenizer.Tokenizer.sample_kept_tokens`: ResTok's
nested dropout (Sec. 3.4), One-D-Piece's tail-token drop, every token for TiTok and a 2-D grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["TokenizerOutput", "TrainingHook"]


@dataclass
class TokenizerOutput:
    """A tokenizer's training forward: what the training objective and the codebook statistics need."""

    reconstruction: torch.Tensor  # (B, 3, H, W) in about [0, 1], unclamped
    ids: torch.Tensor  # (B, L)
    kept_tokens: torch.Tensor  # (B,) prefix length decoded per sample
    quantizer_loss: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    entropy_loss: torch.Tensor
    image_tokens: list[torch.Tensor] = field(default_factory=list)  # ResTok: image-token levels, coarse to fine
    encoder_features: torch.Tensor | None = None  # (B, F) projected coarsest image tokens (alignment)
    decoder_features: torch.Tensor | None = None  # (B, F, g, g) projected feature-query outputs (alignment)
    latents: torch.Tensor | None = None  # (B, L, C) detached quantizer inputs (dead-code restarts start from these)
    code_logits: torch.Tensor | None = None  # (B, K, g, g) a two-stage decoder's logits over its teacher's K codes

    @classmethod
    def quantized(
        cls, reconstruction: torch.Tensor, q: Any, kept_tokens: torch.Tensor, **extra: Any
    ) -> TokenizerOutput:
        """The output of a forward whose quantizer returned ``q`` (its ids, loss terms and detached inputs)."""
        return cls(
            reconstruction, q.ids, kept_tokens, q.loss, q.commitment_loss, q.codebook_loss, q.entropy_loss,
            latents=q.latents, **extra,
        )  # fmt: skip


@dataclass(frozen=True)
class TrainingHook:
    """A family's training declaration (one per family module).

    ``blocks``: the module types that repeat (FSDP2 units, activation-checkpointing units). ``alignment``: the config
    has ``encoder_feature_dim``/``decoder_feature_dim`` heads that the representation alignment trains. ``codes``:
    how its tokens are ordered, which picks the generator trained on them -- ``hierarchical`` (ResTok's levels: HAR),
    ``sequence`` (a 1-D sequence: vanilla AR) or ``grid`` (a 2-D grid in raster order: LlamaGen's GPT, 2-D RoPE).
    ``refuse``: the one-line reason a config cannot train under a run's settings, or None. ``setup``: what the run
    does to the built model before its optimizer sees it (frozen parts, weights a stage starts from); it returns the
    teacher a stage learns from, if any.
    ``same_as_repository`` / ``differs``: what restok's training shares with the family's own repository and what it
    does not (the table in docs/tutorials/train.md).
    """

    blocks: tuple[type, ...]
    alignment: bool = False
    codes: str = "sequence"
    refuse: Callable[[Any, Any], str | None] = lambda config, run: None
    # Before the optimizer sees the model: what a training stage freezes or starts from (TiTok's two stages); returns
    # the frozen teacher whose codes the stage learns (the objective's proxy targets), or None.
    setup: Callable[[Any, Any], Any] = lambda model, run: None
    same_as_repository: str = ""
    differs: str = ""
