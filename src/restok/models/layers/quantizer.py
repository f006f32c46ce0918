"""l2-normalised vector quantizer (Sec. 5.1: 8192 codes of dimension 8), always run in float32.

Axes: B batch, C code dim, L tokens, K codebook size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["VectorQuantizer", "QuantizerOutput"]


@dataclass
class QuantizerOutput:
    """Straight-through codes, ids and the VQ losses."""

    codes: torch.Tensor  # (B, L, C) straight-through quantized vectors
    ids: torch.Tensor  # (B, L) int64
    loss: torch.Tensor  # commitment + codebook + entropy
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    entropy_loss: torch.Tensor
    latents: torch.Tensor | None = None  # (B, L, C) detached inputs as compared with the codes (unit norm when l2)


def _entropy_loss(neg_distances: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """Per-sample entropy minus batch-average entropy of softmax(-d / T) (MAGVIT/LlamaGen style)."""
    logits = neg_distances / temperature
    probs = logits.softmax(-1)
    log_probs = F.log_softmax(logits + 1e-5, dim=-1)
    avg = probs.mean(0)
    avg_entropy = -(avg * torch.log(avg + 1e-5)).sum()
    sample_entropy = -(probs * log_probs).sum(-1).mean()
    return sample_entropy - avg_entropy


class VectorQuantizer(nn.Module):
    """Nearest-code lookup by cosine similarity (squared distance of unit vectors)."""

    def __init__(
        self,
        codebook_size: int,
        token_size: int,
        commitment_cost: float = 0.25,
        entropy_loss_ratio: float = 0.0,
        use_l2_norm: bool = True,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.commitment_cost = commitment_cost
        self.entropy_loss_ratio = entropy_loss_ratio
        self.use_l2_norm = use_l2_norm
        self.embedding = nn.Embedding(codebook_size, token_size)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def codebook(self) -> torch.Tensor:
        """(K, C) code vectors as the decoder sees them (unit norm when ``use_l2_norm``)."""
        w = self.embedding.weight.float()
        return F.normalize(w, dim=-1) if self.use_l2_norm else w

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, C) code vectors."""
        z = F.embedding(ids, self.embedding.weight.float())
        return F.normalize(z, dim=-1) if self.use_l2_norm else z

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """(B, L, C) continuous latents -> codes, ids and losses."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()  # (B, L, C)
            B, L, C = z.shape
            flat = z.reshape(B * L, C)  # (BL, C)
            if self.use_l2_norm:
                flat = F.normalize(flat, dim=-1)  # (BL, C) unit vectors
            emb = self.codebook()  # (K, C)
            # Same expression and order as the official code, so near-ties resolve identically.
            d = (
                torch.sum(flat**2, dim=1, keepdim=True)
                + torch.sum(emb**2, dim=1)
                - 2 * torch.einsum("bd,dn->bn", flat, emb.T)
            )  # (BL, K)
            ids = torch.argmin(d, dim=1)  # (BL,)
            zq = self.lookup(ids).view(B, L, C)  # (B, L, C)
            zn = flat.view(B, L, C)  # (B, L, C)
            commitment = self.commitment_cost * torch.mean((zq.detach() - zn) ** 2)  # ()
            codebook = torch.mean((zq - zn.detach()) ** 2)  # ()
            if self.entropy_loss_ratio > 0:
                entropy = self.entropy_loss_ratio * _entropy_loss(-d)  # ()
            else:
                entropy = d.new_zeros(())  # ()
            codes = zn + (zq - zn).detach()  # straight-through estimator
        return QuantizerOutput(
            codes, ids.view(B, L), commitment + codebook + entropy, commitment, codebook, entropy, zn.detach()
        )
