"""Hierarchical autoregressive (HAR) generator (Sec. 4, Fig. 4, Fig. 8b) on a LlamaGen-style GPT.

Axes: B batch, T sequence positions, D width, h heads, d head size, V vocabulary.
The input layout, the grouped mask and the step schedule come from :mod:`restok.hierarchy`; the model
itself keeps no sampling state: a decode step takes an explicit :class:`KVCache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import hierarchy as Hy
from .checkpoint import Provenance, ResolvedCheckpoint
from .config import HARConfig, generator_preset
from .pretrained import PretrainedModel
from .rope import apply_rotary, rope_1d_table
from .sampling import RELEASED_RECIPE, SamplingConfig, generate

__all__ = ["HARGenerator", "KVCache"]


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        xf = x.float()
        return (xf * torch.rsqrt(torch.mean(xf * xf, dim=-1, keepdim=True) + self.eps)).type_as(x) * self.weight


@dataclass
class KVCache:
    """Static per-layer key/value buffers ``(B, h_kv, L, d)``; written in place by decode steps."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]


class Attention(nn.Module):
    """Causal/grouped self-attention with fused bias-free qkv and 1-D RoPE."""

    def __init__(self, cfg: HARConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv = cfg.n_head, cfg.n_kv_head or cfg.n_head
        self.head_dim = cfg.dim // cfg.n_head
        self.wqkv = nn.Linear(cfg.dim, (self.n_head + 2 * self.n_kv) * self.head_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, D) -> (B, T, D). With ``cache``, k/v are written at ``positions`` and attention runs
        over the whole static cache under ``mask`` (T, L)."""
        B, T, D = x.shape
        kv = self.n_kv * self.head_dim
        q, k, v = self.wqkv(x).split([D, kv, kv], dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim)
        k = k.view(B, T, self.n_kv, self.head_dim)
        v = v.view(B, T, self.n_kv, self.head_dim)
        cos, sin = rope  # (T, d/2)
        q = apply_rotary(q, cos[:, None], sin[:, None])
        k = apply_rotary(k, cos[:, None], sin[:, None])
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, h, T, d)
        if cache is not None:
            kc, vc = cache
            kc.index_copy_(2, positions, k.to(kc.dtype))  # in place: the static cache (no host sync, graph-safe)
            vc.index_copy_(2, positions, v.to(vc.dtype))
            k, v = kc.to(q.dtype), vc.to(q.dtype)  # (B, h_kv, L, d)
        if self.n_kv != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv, dim=1)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout_p if self.training else 0.0
        )  # (B, h, T, d)
        return self.resid_dropout(self.wo(out.transpose(1, 2).reshape(B, T, D)))


class FeedForward(nn.Module):
    """SwiGLU MLP."""

    def __init__(self, cfg: HARConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero whole samples with probability p, rescaling the rest."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class TransformerBlock(nn.Module):
    """Pre-norm (RMSNorm) attention + SwiGLU block."""

    def __init__(self, cfg: HARConfig, drop_path: float) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        h = x + self.drop_path(self.attention(self.attention_norm(x), rope, mask, cache, positions))
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))


class LabelEmbedder(nn.Module):
    """Class embeddings with an extra null row (id ``num_classes``) for classifier-free guidance."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float) -> None:
        super().__init__()
        self.num_classes, self.dropout_prob = num_classes, dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim)

    def forward(self, labels: torch.Tensor, train: bool) -> torch.Tensor:
        """(B,) class ids -> (B, 1, D); in training a ``dropout_prob`` fraction becomes the null class."""
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels).unsqueeze(1)


class SpecialTokenEmbedding(nn.Module):
    """One learned embedding per missing position of the HAR groups ("[M_i]" in Fig. 4)."""

    def __init__(self, rows: int, dim: int) -> None:
        super().__init__()
        self.special_embeddings = nn.Embedding(rows, dim)


class HARGenerator(PretrainedModel):
    """Class-conditional GPT predicting ResTok tokens hierarchically (HAR) or one by one (vanilla AR).

    :attr:`generation_config` is the sampling recipe ``generate`` follows by default: saved beside the weights as
    ``generation_config.json``; the official layout (the released weights) gets the released recipe; a model
    without one samples without guidance.

    Example:
        >>> gen = HARGenerator.from_preset("har-tiny").eval()
        >>> ids = gen.generate(torch.tensor([3, 7]), cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
        >>> ids.shape  # (2, 32), decodable by a ResTok with a matching codebook
    """

    kind = "generator"
    config_class = HARConfig

    def __init__(self, config: HARConfig) -> None:
        super().__init__()
        if not isinstance(config, HARConfig):
            raise TypeError(f"config must be a HARConfig, got {type(config).__name__}")
        self.config = cfg = config
        self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout_prob)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.tok_dropout = nn.Dropout(cfg.token_dropout_p)
        if cfg.special_rows > 0:
            self.spe_tok_embeddings = SpecialTokenEmbedding(cfg.special_rows, cfg.dim)
        else:
            self.spe_tok_embeddings = None
        dpr = [cfg.drop_path_rate * i / max(cfg.n_layer - 1, 1) for i in range(cfg.n_layer)]  # linear in depth
        self.layers = nn.ModuleList([TransformerBlock(cfg, dpr[i]) for i in range(cfg.n_layer)])
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self._init_weights()
        layout = Hy.har_input_layout(cfg.num_tokens, cfg.ar_tokens)
        self.register_buffer("_in_kind", torch.tensor(layout.kind), persistent=False)  # (L,)
        self.register_buffer("_in_index", torch.tensor(layout.index), persistent=False)  # (L,)
        self.register_buffer("_mask", Hy.har_attention_mask(cfg.num_tokens, cfg.ar_tokens), persistent=False)
        # Kept out of the buffers so that ``.to(bfloat16)`` cannot round the table (it stays float32).
        self._rope_table = rope_1d_table(cfg.num_tokens, cfg.dim // cfg.n_head, cfg.rope_base)  # 2 x (L, d/2)
        self.provenance = Provenance()
        self.generation_config = SamplingConfig()

    def _init_weights(self) -> None:
        """LlamaGen init: N(0, 0.02) linear/embedding weights, zero output layer (initial loss ln V)."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
        nn.init.zeros_(self.output.weight)

    # -------------------------------------------------------------------------------- construction
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "HARGenerator":
        """A randomly initialised generator from a preset (``har-b``, ``har-l``, ``har-xl``, ``har-xxl``, ``har-tiny``)."""
        return cls(generator_preset(name, **overrides))

    def _load_side_files(self, found: ResolvedCheckpoint, layout: str) -> None:
        """The sampling recipe: ``generation_config.json`` if present, else the released one for official weights."""
        f = found.side_file("generation_config.json")
        if f is not None:
            self.generation_config = SamplingConfig.load(f)
        elif layout == "official":
            self.generation_config = RELEASED_RECIPE

    def _side_files(self) -> dict[str, Any]:
        return {"generation_config.json": self.generation_config.to_dict()}

    @property
    def num_tokens(self) -> int:
        """L, the sequence length generated."""
        return self.config.num_tokens

    @property
    def null_class(self) -> int:
        """The class id used for the unconditional branch of guidance."""
        return self.config.num_classes

    @property
    def num_steps(self) -> int:
        """Model calls per sample (9 for HAR-128, L for vanilla AR)."""
        return self.config.num_steps

    @property
    def step_positions(self) -> tuple[tuple[int, int], ...]:
        """``(start, end)`` token positions predicted by each model call (Sec. 4, Fig. 4)."""
        return Hy.har_step_positions(self.config.num_tokens, self.config.ar_tokens)

    @property
    def supports_guidance(self) -> bool:
        """Whether the class table has the null row that classifier-free guidance needs."""
        return self.cls_embedding.embedding_table.num_embeddings > self.config.num_classes

    def embed_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) class ids (the null class allowed) -> (B, 1, D) class embeddings, without label dropout."""
        return self.cls_embedding(labels, train=False)

    # -------------------------------------------------------------------------------- validation
    def check_labels(self, labels: Any, allow_null: bool = False) -> torch.Tensor:
        """Class ids as a (B,) int64 tensor, or a ValueError naming the bad ids."""
        t = torch.as_tensor(labels)
        if t.dim() == 0:
            t = t.reshape(1)
        if t.dim() != 1 or t.is_floating_point() or t.dtype == torch.bool:
            raise ValueError(f"class labels must be a 1-D integer tensor or list, got {t.dtype} of shape {list(t.shape)}")
        if isinstance(labels, torch.Tensor) and labels.is_floating_point():
            raise ValueError(f"class labels must be integers, got a {labels.dtype} tensor")
        hi = self.config.num_classes + (1 if allow_null and self.supports_guidance else 0)
        bad = sorted({int(v) for v in t.tolist() if not 0 <= int(v) < hi})
        if bad:
            raise ValueError(f"unknown class id(s) {bad[:10]}: this generator has classes 0..{self.config.num_classes - 1}")
        return t.long()

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids as (B, L) int64, or a ValueError."""
        L, V = self.config.num_tokens, self.config.vocab_size
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            shape = list(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be an integer tensor of shape [B, {L}], got {shape}")
        if tokens.shape[1] not in (L, L - 1):
            raise ValueError(f"tokens must have {L} positions (or {L - 1} without the last), got {tokens.shape[1]}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= V):
            raise ValueError(f"token ids must be in [0, {V}), got range [{int(tokens.min())}, {int(tokens.max())}]")
        return tokens.long()

    # -------------------------------------------------------------------------------- model
    def embed_positions(
        self, tokens: torch.Tensor, class_emb: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Input embeddings (B, T, D) of sequence ``positions`` (T,), following the HAR layout.

        ``tokens`` (B, >= max needed) holds the already known token ids; ``class_emb`` is (B, 1, D).
        """
        kind = self._in_kind[positions]  # (T,)
        index = self._in_index[positions]  # (T,)
        B = class_emb.shape[0]
        tok_idx = torch.where(kind == Hy.HARInput.TOKEN, index, torch.zeros_like(index))
        emb = self.tok_embeddings(tokens[:, tok_idx])  # (B, T, D)
        if self.spe_tok_embeddings is not None:
            spe_idx = torch.where(kind == Hy.HARInput.SPECIAL, index, torch.zeros_like(index))
            spe = self.spe_tok_embeddings.special_embeddings(spe_idx)[None].expand(B, -1, -1)  # (B, T, D)
            emb = torch.where((kind == Hy.HARInput.SPECIAL)[None, :, None], spe, emb)
        emb = torch.where((kind == Hy.HARInput.CLASS)[None, :, None], class_emb.to(emb.dtype), emb)
        return emb

    def _run(
        self,
        h: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Transformer layers + head on (B, T, D) inputs at ``positions`` -> logits (B, T, V) float32."""
        cos, sin = self._rope_on(positions.device)
        rope = (cos[positions], sin[positions])
        h = self.tok_dropout(h)
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else (cache.keys[i], cache.values[i])
            h = layer(h, rope, mask, layer_cache, positions)
        return self.output(self.norm(h)).float()

    def _rope_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The float32 RoPE table, moved to ``device`` once (compiled steps call this before tracing)."""
        cos, sin = self._rope_table
        if cos.device != device:
            self._rope_table = cos, sin = cos.to(device), sin.to(device)
        return cos, sin

    def forward(self, tokens: torch.Tensor, class_labels: torch.Tensor, drop_labels: bool | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) in the training layout: position p predicts token p.

        ``tokens`` is (B, L) (the last token is never an input, so (B, L-1) works too);
        ``class_labels`` (B,) may include the null class ``num_classes``. In training mode labels are
        dropped to the null class with ``class_dropout_prob`` unless ``drop_labels=False`` (the trainer
        drops them itself, per sample, so that the draw does not depend on how a batch is split).
        """
        tokens = self._check_tokens(tokens)
        labels = self.check_labels(class_labels, allow_null=True).to(tokens.device)
        if labels.shape[0] != tokens.shape[0]:
            raise ValueError(f"got {labels.shape[0]} class labels for {tokens.shape[0]} token sequences")
        drop = self.training if drop_labels is None else drop_labels
        class_emb = self.cls_embedding(labels, train=drop)  # (B, 1, D)
        positions = torch.arange(self.config.num_tokens, device=tokens.device)
        h = self.embed_positions(tokens, class_emb, positions)  # (B, L, D)
        return self._run(h, positions, self._mask)

    def new_cache(self, batch: int, dtype: torch.dtype | None = None, device: torch.device | None = None) -> KVCache:
        """Zeroed static KV cache for ``batch`` sequences of length L."""
        p = self.tok_embeddings.weight
        shape = (batch, self.config.n_kv_head or self.config.n_head, self.config.num_tokens, self.config.dim // self.config.n_head)
        mk = lambda: torch.zeros(shape, dtype=dtype or p.dtype, device=device or p.device)  # noqa: E731
        return KVCache([mk() for _ in self.layers], [mk() for _ in self.layers])

    def forward_step(
        self, tokens: torch.Tensor, class_emb: torch.Tensor, start: int, end: int, cache: KVCache
    ) -> torch.Tensor:
        """One cached decode step: logits (B, end-start, V) for positions ``[start, end)``.

        Inputs of those positions only depend on tokens before ``start`` (the HAR layout guarantees it),
        which must already be in ``tokens``; their keys/values are written into ``cache``.
        """
        positions = torch.arange(start, end, device=tokens.device)
        return self._step(tokens, class_emb, positions, self._mask[start:end], cache)

    def _step(
        self, tokens: torch.Tensor, class_emb: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """:meth:`forward_step` with the step's positions (T,) and mask rows (T, L) given as tensors: what
        :mod:`restok.compiled` compiles, one graph per step shape."""
        h = self.embed_positions(tokens, class_emb, positions)  # (B, T, D)
        return self._run(h, positions, mask, cache)

    @torch.no_grad()
    def generate(
        self,
        class_labels: Any,
        sampling: SamplingConfig | None = None,
        *,
        cfg_scale: float | None = None,
        cfg_schedule: str | None = None,
        cfg_start: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        callback: Any = None,
        use_cache: bool = True,
        num_tokens: int | None = None,
        prefix: torch.Tensor | None = None,
        compile: bool | str = False,
    ) -> torch.Tensor:
        """Sample token ids (B, L) for the given classes in ``num_steps`` calls (``num_tokens``: stop after the call that
        completes that many, in fewer calls; ``prefix``: keep an image's first k tokens and sample the finer levels;
        ``compile``: run each step shape as one ``torch.compile`` graph, CUDA graphs on CUDA, same tokens).

        The recipe is ``sampling`` (default: :attr:`generation_config`) with any keyword given here changed; see
        :class:`~restok.sampling.SamplingConfig` and :func:`restok.sampling.generate`.
        """
        sp = (sampling or self.generation_config).replace(
            cfg_scale=cfg_scale, cfg_schedule=cfg_schedule, cfg_start=cfg_start, temperature=temperature, top_k=top_k, top_p=top_p
        )
        return generate(self, class_labels, sp, generator=generator, callback=callback, use_cache=use_cache,
                        num_tokens=num_tokens, prefix=prefix, compile=compile)
