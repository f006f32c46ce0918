"""Hierarchical autoregressive (HAR) generator (Sec. 4, Fig. 4, Fig. 8b) on a LlamaGen-style GPT.

Axes: B batch, T sequence positions, D width, V vocabulary, L tokens.
The input layout, the grouped mask and the step schedule come from :mod:`restok.core.hierarchy`; the model keeps no
sampling state: a decode step takes an explicit :class:`~restok.sampling.KVCache`, and sampling is
:func:`restok.sampling.generate` through the members of :class:`~restok.sampling.Sampleable`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ...core import hierarchy as Hy
from ...core.registry import register_model
from ...hub.pretrained import PretrainedModel
from ...hub.provenance import Provenance
from ...hub.resolve import ResolvedCheckpoint
from ...sampling import RELEASED_RECIPE, CompiledSampler, KVCache, SamplingConfig, generate
from ..layers.llama import LabelEmbedder, RMSNorm, SpecialTokenEmbedding, TransformerBlock
from ..layers.rope import RopeTable, rope_1d_table
from .config import HAR_PRESETS, HARConfig
from .official import HAR_LAYOUTS

__all__ = ["HARGenerator", "KVCache"]


@register_model
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

    family = "har"
    title = "HAR"
    kind = "generator"
    config_class = HARConfig
    presets = HAR_PRESETS
    layouts = HAR_LAYOUTS
    description = "a hierarchical autoregressive (HAR) class-conditional generator of ResTok tokens"

    def __init__(self, config: HARConfig) -> None:
        super().__init__()
        if not isinstance(config, HARConfig):
            raise TypeError(f"config must be a HARConfig, got {type(config).__name__}")
        self.config = cfg = config
        self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout_prob)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.tok_dropout = nn.Dropout(cfg.token_dropout_p)
        self.spe_tok_embeddings = SpecialTokenEmbedding(cfg.special_rows, cfg.dim) if cfg.special_rows > 0 else None
        dpr = [cfg.drop_path_rate * i / max(cfg.n_layer - 1, 1) for i in range(cfg.n_layer)]  # linear in depth
        self.layers = nn.ModuleList([TransformerBlock(cfg, dpr[i]) for i in range(cfg.n_layer)])
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self._init_weights()
        layout = Hy.har_input_layout(cfg.num_tokens, cfg.ar_tokens)
        self.register_buffer("_in_kind", torch.tensor(layout.kind), persistent=False)  # (L,)
        self.register_buffer("_in_index", torch.tensor(layout.index), persistent=False)  # (L,)
        self.register_buffer("_mask", Hy.har_attention_mask(cfg.num_tokens, cfg.ar_tokens), persistent=False)  # (L, L)
        self.rope = RopeTable(
            rope_1d_table(cfg.num_tokens, cfg.dim // cfg.n_head, cfg.rope_base)
        )  # float32 (L, d/2) x 2
        self.provenance = Provenance()
        self.generation_config = SamplingConfig()

    def _init_weights(self) -> None:
        """LlamaGen init: N(0, 0.02) linear/embedding weights, zero output layer (initial loss ln V)."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
        nn.init.zeros_(self.output.weight)

    # -------------------------------------------------------------------------------- what sampling reads
    @property
    def num_tokens(self) -> int:
        """L, the sequence length generated."""
        return self.config.num_tokens

    @property
    def vocab_size(self) -> int:
        """V, the tokenizer's codebook size."""
        return self.config.vocab_size

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

    def step_mask(self, start: int, end: int) -> torch.Tensor:
        """The grouped mask's rows (end - start, L) of positions ``[start, end)`` (Fig. 8b)."""
        return self._mask[start:end]

    # -------------------------------------------------------------------------------- model
    def embed_positions(self, tokens: torch.Tensor, class_emb: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Input embeddings (B, T, D) of sequence ``positions`` (T,), following the HAR layout (Fig. 4).

        ``tokens`` (B, >= max needed) holds the already known token ids; ``class_emb`` is (B, 1, D).
        """
        kind = self._in_kind[positions]  # (T,)
        index = self._in_index[positions]  # (T,)
        B = class_emb.shape[0]
        tok_idx = torch.where(kind == Hy.HARInput.TOKEN, index, torch.zeros_like(index))  # (T,)
        emb = self.tok_embeddings(tokens[:, tok_idx])  # (B, T, D)
        if self.spe_tok_embeddings is not None:
            spe_idx = torch.where(kind == Hy.HARInput.SPECIAL, index, torch.zeros_like(index))  # (T,)
            spe = self.spe_tok_embeddings.special_embeddings(spe_idx)[None].expand(B, -1, -1)  # (B, T, D)
            emb = torch.where((kind == Hy.HARInput.SPECIAL)[None, :, None], spe, emb)  # (B, T, D)
        return torch.where((kind == Hy.HARInput.CLASS)[None, :, None], class_emb.to(emb.dtype), emb)  # (B, T, D)

    def run_layers(
        self, h: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: KVCache | None = None
    ) -> torch.Tensor:
        """Transformer layers + head on (B, T, D) inputs at ``positions`` (T,) under ``mask`` -> logits (B, T, V)
        float32."""
        rope = (self.rope.cos[positions], self.rope.sin[positions])  # (T, d/2) each
        h = self.tok_dropout(h)  # (B, T, D)
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else (cache.keys[i], cache.values[i])
            h = layer(h, rope, mask, layer_cache, positions)  # (B, T, D)
        return self.output(self.norm(h)).float()  # (B, T, V)

    def forward(
        self, tokens: torch.Tensor, class_labels: torch.Tensor, drop_labels: bool | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) in the training layout: position p predicts token p.

        ``tokens`` is (B, L) (the last token is never an input, so (B, L-1) works too);
        ``class_labels`` (B,) may include the null class ``num_classes``. In training mode labels are
        dropped to the null class with ``class_dropout_prob`` unless ``drop_labels=False`` (the trainer
        drops them itself, per sample, so that the draw does not depend on how a batch is split).
        """
        tokens = self._check_tokens(tokens)  # (B, L)
        labels = self.check_labels(class_labels, allow_null=True).to(tokens.device)  # (B,)
        if labels.shape[0] != tokens.shape[0]:
            raise ValueError(f"got {labels.shape[0]} class labels for {tokens.shape[0]} token sequences")
        drop = self.training if drop_labels is None else drop_labels
        class_emb = self.cls_embedding(labels, train=drop)  # (B, 1, D)
        positions = torch.arange(self.config.num_tokens, device=tokens.device)  # (L,)
        h = self.embed_positions(tokens, class_emb, positions)  # (B, L, D)
        return self.run_layers(h, positions, self._mask)  # (B, L, V)

    def new_cache(self, batch: int, dtype: torch.dtype | None = None, device: torch.device | None = None) -> KVCache:
        """Zeroed static KV cache for ``batch`` sequences of length L."""
        p = self.tok_embeddings.weight
        shape = (
            batch,
            self.config.n_kv_head or self.config.n_head,
            self.config.num_tokens,
            self.config.dim // self.config.n_head,
        )
        mk = lambda: torch.zeros(shape, dtype=dtype or p.dtype, device=device or p.device)  # noqa: E731
        return KVCache([mk() for _ in self.layers], [mk() for _ in self.layers])

    def step_logits(
        self, tokens: torch.Tensor, class_emb: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """One cached decode step: logits (B, T, V) of ``positions`` (T,) under ``mask`` (T, L), whose keys/values are
        written into ``cache``. Their inputs depend only on tokens before them (the HAR layout guarantees it), which
        must already be in ``tokens`` (B, L); ``class_emb`` is (B, 1, D)."""
        h = self.embed_positions(tokens, class_emb, positions)  # (B, T, D)
        return self.run_layers(h, positions, mask, cache)  # (B, T, V)

    def forward_step(
        self, tokens: torch.Tensor, class_emb: torch.Tensor, start: int, end: int, cache: KVCache
    ) -> torch.Tensor:
        """:meth:`step_logits` of positions ``[start, end)``: logits (B, end-start, V)."""
        positions = torch.arange(start, end, device=tokens.device)  # (T,)
        return self.step_logits(tokens, class_emb, positions, self.step_mask(start, end), cache)

    @torch.no_grad()
    def generate(
        self,
        class_labels: Any,
        sampling: SamplingConfig | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: Any = None,
        use_cache: bool = True,
        num_tokens: int | None = None,
        prefix: torch.Tensor | None = None,
        compile: bool | str = False,
        sampler: CompiledSampler | None = None,
        **changes: Any,
    ) -> torch.Tensor:
        """Sample token ids (B, L) for the given classes in ``num_steps`` calls (``num_tokens``: stop after the call
        that
        completes that many, in fewer calls; ``prefix``: keep an image's first k tokens and sample the finer levels;
        ``compile``: run each step shape as one ``torch.compile`` graph, CUDA graphs on CUDA, same tokens; ``sampler``:
        a
        :class:`~restok.sampling.CompiledSampler` kept by the caller).

        The recipe is ``sampling`` (default: :attr:`generation_config`) with any of its settings given as keywords
        changed (``cfg_scale=2.0``, ``top_k=50``, ...); see :class:`~restok.sampling.SamplingConfig` and
        :func:`restok.sampling.generate`.
        """
        sp = SamplingConfig.resolve(sampling, self.generation_config, **changes)
        return generate(
            self,
            class_labels,
            sp,
            generator=generator,
            callback=callback,
            use_cache=use_cache,
            num_tokens=num_tokens,
            prefix=prefix,
            compile=compile,
            sampler=sampler,
        )

    # -------------------------------------------------------------------------------- files beside the weights
    def load_side_files(self, found: ResolvedCheckpoint, layout: Any) -> None:
        """The sampling recipe: ``generation_config.json`` if present, else the released one for official weights."""
        f = found.side_file("generation_config.json")
        if f is not None:
            self.generation_config = SamplingConfig.load(f)
        elif layout is not None:
            self.generation_config = RELEASED_RECIPE

    def side_files(self) -> dict[str, Any]:
        """``generation_config.json``."""
        return {"generation_config.json": self.generation_config.to_dict()}

    # -------------------------------------------------------------------------------- validation
    def check_labels(self, labels: Any, allow_null: bool = False) -> torch.Tensor:
        """Class ids as a (B,) int64 tensor, or a ValueError naming the bad ids (names are resolved by
        :class:`~restok.ResTokPipeline`, not here)."""
        if isinstance(labels, torch.Tensor):
            if labels.dim() > 1 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
                raise ValueError(
                    f"class labels must be a 1-D integer tensor or list, got {labels.dtype} of shape "
                    f"{list(labels.shape)}"
                )
            values = labels.reshape(-1).tolist()
        else:
            values = list(labels) if isinstance(labels, (list, tuple, range)) else [labels]
            wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
            if wrong:
                raise ValueError(
                    f"class labels must be integer class ids, got {wrong[0]!r}"
                    + (
                        " (class names are resolved by ResTokPipeline, e.g. pipe(['goldfish']))"
                        if isinstance(wrong[0], str)
                        else ""
                    )
                )
        if not values:
            raise ValueError("no class labels given: an empty batch has nothing to generate")
        hi = self.config.num_classes + (1 if allow_null and self.supports_guidance else 0)
        bad = sorted({int(v) for v in values if not 0 <= int(v) < hi})
        if bad:
            raise ValueError(
                f"unknown class id(s) {bad[:10]}: this generator has classes 0..{self.config.num_classes - 1}"
            )
        return torch.tensor([int(v) for v in values], dtype=torch.long)

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
