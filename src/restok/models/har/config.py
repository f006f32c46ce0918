"""The HAR generator's configuration (Sec. 4) -- a LlamaGen GPT whose tokens are predicted in hierarchical groups --
and its named presets (the GPT sizes of :data:`GPT_SIZES`, and a tiny CPU one). LlamaGen's
own GPT (:mod:`restok.models.llamagen_gpt`) is the same architecture with every token its own group.

The official checkpoint layout lives in :mod:`.official`, the model in :mod:`.model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core import hierarchy as H
from ...core.fields import Config, check_field_types, replace_checked, setting

__all__ = ["HARConfig", "GPT_SIZES", "HAR_PRESETS", "GENERATOR_PRESETS", "generator_preset"]

# LlamaGen's GPT sizes, (dim, layers, heads) by the name its code gives them (``GPT-B`` ... ``GPT-7B``): the one table
# of this architecture, shared by HAR, its official layout and LlamaGen's own GPT.
GPT_SIZES = {
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "XL": (1280, 36, 20),
    "XXL": (1536, 48, 24),
    "XXXL": (2560, 48, 40),
    "1B": (2048, 22, 32),
    "3B": (3200, 24, 32),
    "7B": (4096, 32, 32),
}


@dataclass(frozen=True)
class HARConfig(Config):
    """LlamaGen-style GPT with hierarchical autoregressive groups (Sec. 4). Defaults are the official GPT-L."""

    dim: int = setting(1024, ge=1, le=65536)
    n_layer: int = setting(24, ge=1, le=1024)
    n_head: int = setting(16, ge=1, le=1024)
    n_kv_head: int | None = setting(None, ge=1, le=1024)
    multiple_of: int = setting(256, ge=1, le=65536)  # SwiGLU hidden size rounded up to a multiple of this
    ffn_dim_multiplier: float | None = setting(None, gt=0, le=64)
    rope_base: float = setting(10000.0, gt=0)
    norm_eps: float = setting(1e-5, gt=0, le=1)
    initializer_range: float = setting(0.02, ge=0, le=10)
    num_tokens: int = setting(128, ge=2, le=8192)  # block size L
    vocab_size: int = setting(8192, ge=2, le=2**24)  # = the tokenizer's codebook size
    num_classes: int = setting(1000, ge=1, le=2**24)
    ar_tokens: int = setting(
        4, ge=1, le=8192
    )  # A tokens predicted one by one; A = num_tokens gives vanilla next-token AR
    num_special_tokens: int | None = setting(
        None, ge=0, le=8192
    )  # rows of the special-token table; None = L-1 (official) or 0 for vanilla
    class_dropout_prob: float = setting(0.1, ge=0, lt=1)  # label dropout for classifier-free guidance
    token_dropout_p: float = setting(0.1, ge=0, lt=1)
    attn_dropout_p: float = setting(0.0, ge=0, lt=1)
    resid_dropout_p: float = setting(0.1, ge=0, lt=1)
    ffn_dropout_p: float = setting(0.1, ge=0, lt=1)
    drop_path_rate: float = setting(0.0, ge=0, lt=1)

    def __post_init__(self) -> None:
        check_field_types(self)
        H.har_step_positions(self.num_tokens, self.ar_tokens)  # validates num_tokens and ar_tokens
        if self.dim % self.n_head or (self.dim // self.n_head) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_head} heads of even size")
        kv = self.n_kv_head or self.n_head
        if self.n_head % kv:
            raise ValueError(f"n_head {self.n_head} must be a multiple of n_kv_head {kv}")
        if self.vocab_size < 2 or self.num_classes < 1 or self.n_layer < 1:
            raise ValueError("vocab_size must be >= 2, num_classes >= 1 and n_layer >= 1")
        need = H.har_input_layout(self.num_tokens, self.ar_tokens).num_special
        if self.num_special_tokens is not None and self.num_special_tokens < need:
            raise ValueError(
                f"num_special_tokens={self.num_special_tokens} is too small: the HAR layout for "
                f"{self.num_tokens} tokens with ar_tokens={self.ar_tokens} uses {need}"
            )
        for name in ("class_dropout_prob", "token_dropout_p", "attn_dropout_p", "resid_dropout_p", "ffn_dropout_p"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def vanilla(self) -> bool:
        """True when every token is predicted one by one (App. B)."""
        return self.ar_tokens == self.num_tokens

    @property
    def special_rows(self) -> int:
        """Rows of the special-token embedding table."""
        if self.num_special_tokens is not None:
            return self.num_special_tokens
        return 0 if self.vanilla else self.num_tokens - 1

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU hidden size: ``2/3 * 4 * dim`` (times the multiplier) rounded up to ``multiple_of``."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return -(-hidden // self.multiple_of) * self.multiple_of

    @property
    def num_steps(self) -> int:
        """Generator calls per sample: 9 for HAR-128, L for vanilla AR."""
        return H.har_num_steps(self.num_tokens, self.ar_tokens)

    def summary(self) -> str:
        """One line for listings (``restok info``)."""
        return f"{self.n_layer:3d} layers x {self.dim:5d}  {self.num_tokens:4d} tokens in {self.num_steps} calls"


def _sized(size: str, **kw: Any) -> HARConfig:
    """A GPT of one of the release sizes (official defaults otherwise: 128 tokens, 8192 codes, 1000 classes)."""
    dim, n_layer, n_head = GPT_SIZES[size]
    return HARConfig(dim=dim, n_layer=n_layer, n_head=n_head, **kw)


HAR_PRESETS: dict[str, HARConfig] = {
    "har-b": _sized("B"),
    "har-l": _sized("L"),
    "har-xl": _sized("XL"),
    "har-xxl": _sized("XXL"),
    "har-tiny": HARConfig(dim=128, n_layer=4, n_head=4, num_tokens=32, vocab_size=1024, num_classes=10, multiple_of=32),
}
# The name the presets had when HAR was restok's only generator (``restok.GENERATOR_PRESETS``).
GENERATOR_PRESETS = HAR_PRESETS


def generator_preset(name: str, **overrides: Any) -> HARConfig:
    """The named HAR config; ``num_tokens``, ``vocab_size``, ``num_classes``, ``ar_tokens`` etc. may be
    overridden."""
    if name not in HAR_PRESETS:
        raise ValueError(f"unknown generator preset {name!r}; available: {sorted(HAR_PRESETS)}")
    return replace_checked(HAR_PRESETS[name], overrides)
