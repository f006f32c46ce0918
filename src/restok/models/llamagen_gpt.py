"""LlamaGen's class-conditional GPT (Sun et al. 2024; GPT-B/L/XL c2i): the 2-D AR baseline of the paper's Table 1,
predicting the VQ-16 grid one cell at a time in raster order (256 calls at 256 px, 576 at 384 px).

It is restok's generator with the vanilla layout (every token predicted one by one, no special tokens: App. B) and
one difference, the position code: LlamaGen rotates each head's first half by the cell's row and its second half by
its column (2-D RoPE over the g x g grid), and gives the class token a table row of zeros (cos = sin = 0, so its
query and key are zeroed before attention, as in the release code). Sampling is restok's (KV cache, guidance
schedules, top-k/top-p, compiled steps), so ``restok generate`` and ``restok eval generation`` run LlamaGen under the
same sampler and evaluator as HAR.

Written from the computation of github.com/FoundationVision/LlamaGen ``autoregressive/models/gpt.py``
(``precompute_freqs_cis_2d``) with its state-dict names; its released ``c2i_*_{256,384}.pt`` hold them under
``"model"``; the grid size is read from the file name (``_384`` -> 24 x 24) unless a config says otherwise.

Axes: L = g*g tokens, d head size.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..core.registry import Layout, register_model
from ..core.release import ReleaseConfig, ReleaseError, WeightShapes
from ..hub.resolve import ResolvedCheckpoint
from ..sampling import SamplingConfig
from .har import GPT_SIZES, HARConfig, HARGenerator
from .layers.rope import RopeTable

__all__ = ["LlamaGenGPT", "LLAMAGEN_GPT_PRESETS", "llamagen_rope_2d", "LLAMAGEN_RECIPE"]

# The FID recipe of LlamaGen's GETTING_STARTED (sample_c2i_ddp.py: top-k 0, top-p 1, temperature 1): guidance 2.0 for
# B and L, 1.75 from XL on.
LLAMAGEN_RECIPE = SamplingConfig(cfg_scale=2.0, cfg_schedule="constant", top_k=0, top_p=1.0, temperature=1.0)


def _gpt(size: str, grid: int = 16, **kw: Any) -> HARConfig:
    dim, n_layer, n_head = GPT_SIZES[size]
    L = grid * grid
    return HARConfig(
        dim=dim, n_layer=n_layer, n_head=n_head, num_tokens=L, vocab_size=16384, ar_tokens=L, num_special_tokens=0, **kw
    )


LLAMAGEN_GPT_PRESETS: dict[str, HARConfig] = {
    "llamagen-gpt-b": _gpt("B"),
    "llamagen-gpt-l": _gpt("L"),
    "llamagen-gpt-xl": _gpt("XL", 24),
    "llamagen-gpt-b-384": _gpt("B", 24),
    "llamagen-gpt-l-384": _gpt("L", 24),
    "llamagen-gpt-tiny": HARConfig(
        dim=64, n_layer=2, n_head=4, num_tokens=64, vocab_size=64, num_classes=10, ar_tokens=64, num_special_tokens=0
    ),
}


def llamagen_rope_2d(num_tokens: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of shape (L, d/2) for sequence positions 0..L-1: position 0 (the class token) a row of zeros, position
    p >= 1 the grid cell p - 1 = (row, col): the first d/4 pairs rotate by the row, the last d/4 by the column."""
    g = math.isqrt(num_tokens)
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))  # (d/4,) float32, as the release
    angles = torch.outer(torch.arange(g), freqs)  # (g, d/4)
    grid = torch.cat(
        [angles[:, None, :].expand(-1, g, -1), angles[None, :, :].expand(g, -1, -1)], dim=-1
    )  # (g, g, d/2)
    cells = grid.flatten(0, 1)[: num_tokens - 1]  # (L-1, d/2): the last cell is never an input
    zero = torch.zeros(1, half)
    return torch.cat([zero, torch.cos(cells)]), torch.cat([zero, torch.sin(cells)])  # (L, d/2) each


def _check(cfg: HARConfig) -> HARConfig:
    g = math.isqrt(cfg.num_tokens)
    if g * g != cfg.num_tokens or cfg.ar_tokens != cfg.num_tokens or cfg.special_rows:
        raise ValueError(
            f"a LlamaGen GPT predicts a square grid one token at a time: num_tokens must be a square "
            f"(got {cfg.num_tokens}), ar_tokens = num_tokens and num_special_tokens 0"
        )
    if (cfg.dim // cfg.n_head) % 4:
        raise ValueError(f"2-D RoPE needs a head size divisible by 4, got {cfg.dim // cfg.n_head}")
    return cfg


def _gpt_keys(keys: Any) -> bool:
    return (
        "tok_embeddings.weight" in keys
        and "layers.0.attention.wqkv.weight" in keys
        and not any(k.startswith("spe_tok_embeddings") for k in keys)
    )


def _matches(cfg: Mapping[str, Any] | None, keys: Any) -> bool:
    if cfg and cfg.get("format"):
        return False
    if cfg and cfg.get("family") == "llamagen-gpt":  # a ModelArgs dump marked as LlamaGen's (an unmarked flat dump is
        return True  # indistinguishable from ResTok's vanilla AR config, which the official layout reads)
    return (not cfg or set(cfg) <= _ARGS) and _gpt_keys(keys)


# What a config given with release weights may say (the repository's ModelArgs; e.g. config={"block_size": 576}).
_ARGS = {
    "family",
    "dim",
    "n_layer",
    "n_head",
    "n_kv_head",
    "multiple_of",
    "ffn_dim_multiplier",
    "rope_base",
    "norm_eps",
    "num_classes",
    "vocab_size",
    "cls_token_num",
    "block_size",
    "model_type",
    "class_dropout_prob",
}


def _grid_hint(where: str) -> int:
    """Grid side from a release file name (``c2i_L_384.pt`` -> 24), else 16 (256 px)."""
    found = re.findall(r"(?<![0-9])(256|384|512)(?![0-9])", where.rsplit("/", 1)[-1])
    return int(found[-1]) // 16 if found else 16


def config_from_weights(raw: Mapping[str, Any] | None, shapes: Mapping[str, tuple[int, ...]], where: str) -> HARConfig:
    """The config read off a release's weights (and its ModelArgs when given, read strictly: errors name the key):
    width, depth, heads (the release sizes' heads for their widths), grouped keys, classes, vocabulary; the grid from
    the config or the file name."""
    w = WeightShapes(shapes)
    vocab, dim = w.dims("tok_embeddings.weight", 2)
    classes = w.dim("cls_embedding.embedding_table.weight", 2, 0) - 1  # the last row is guidance's null class
    n_layer = w.count("layers.", "transformer layers")
    qkv = w.dim("layers.0.attention.wqkv.weight", 2, 0)
    r = ReleaseConfig(raw or {})
    for key, found in (("dim", dim), ("n_layer", n_layer), ("vocab_size", vocab), ("num_classes", classes)):
        if r.get(key, int, found) != found:
            raise ReleaseError(f"{key} is {r.data[key]} but the weights have {found}")
    _class_conditional(r)
    default_heads = next((h for d, _, h in GPT_SIZES.values() if d == dim), max(1, dim // 64))
    n_head = r.get("n_head", int, default_heads)
    if n_head < 1 or dim % n_head or (dim // n_head) % 2:
        raise ReleaseError(f"n_head {n_head} does not divide the weights' width {dim}")
    hd = dim // n_head
    kv = (qkv // hd - n_head) // 2
    if kv < 1 or qkv != (n_head + 2 * kv) * hd:
        raise ReleaseError(
            f"tensor 'layers.0.attention.wqkv.weight' has {qkv} rows: not q, k and v of {n_head} heads", "weights"
        )
    values = r.read(
        {
            "num_tokens": ("block_size", int, _grid_hint(where) ** 2),
            "rope_base": ("rope_base", float, 10000.0),
            "multiple_of": ("multiple_of", int, 256),
            "norm_eps": ("norm_eps", float, 1e-5),
            "class_dropout_prob": ("class_dropout_prob", float, 0.1),
        }
    )
    ffn = r.get("ffn_dim_multiplier", float, None, optional=True)
    L = values["num_tokens"]
    cfg = r.build(
        _checked,
        {"ffn_dim_multiplier": "ffn_dim_multiplier", "n_head": "n_head"},
        sized_by_weights=True,
        dim=dim,
        n_layer=n_layer,
        n_head=n_head,
        n_kv_head=None if kv == n_head else kv,
        vocab_size=vocab,
        num_classes=classes,
        ar_tokens=L,
        num_special_tokens=0,
        ffn_dim_multiplier=ffn,
        **values,
    )
    return cfg


def _class_conditional(r: ReleaseConfig) -> None:
    """Refuse what the sampler does not implement: text-conditional GPTs, several class tokens."""
    if r.get("model_type", str, "c2i") != "c2i":
        raise ReleaseError(f"model_type is {r.data['model_type']!r}: only class-conditional (c2i) GPTs are supported")
    if r.get("cls_token_num", int, 1) != 1:
        raise ReleaseError(f"cls_token_num is {r.data['cls_token_num']}: only 1 is supported")


def _checked(**values: Any) -> HARConfig:
    """A HARConfig that a LlamaGen GPT can be (:func:`_check`)."""
    return _check(HARConfig(**values))


_checked.__name__ = "HARConfig"  # its errors name HARConfig's fields


@register_model
class LlamaGenGPT(HARGenerator):
    """LlamaGen's c2i GPT on VQ-16 codes, sampled by restok's sampler (``num_steps`` = L calls).

    Example:
        >>> gen = LlamaGenGPT.from_pretrained("c2i_L_256.pt")  # a release file (weights_only) or a converted folder
        >>> vq = LlamaGenVQ.from_pretrained("vq_ds16_c2i.pt")
        >>> images = vq.decode(gen.generate([207, 360], cfg_scale=2.0, generator=torch.Generator().manual_seed(0)))
    """

    family = "llamagen-gpt"
    title = "LlamaGen GPT"
    presets = LLAMAGEN_GPT_PRESETS
    layouts = (Layout("release", _matches, from_weights=config_from_weights),)
    ignored_prefixes = ("freqs_cis", "causal_mask")
    description = "LlamaGen's class-conditional GPT (Sun et al. 2024): VQ-16 grid tokens in raster order, 2-D RoPE"

    def __init__(self, config: HARConfig) -> None:
        super().__init__(_check(config) if isinstance(config, HARConfig) else config)
        self.rope = RopeTable(llamagen_rope_2d(config.num_tokens, config.dim // config.n_head, config.rope_base))

    @staticmethod
    def check_config(config: HARConfig) -> HARConfig:
        """A ValueError unless ``config`` is one a LlamaGen GPT can be (a square grid predicted token by token, 2-D
        RoPE heads)."""
        return _check(config)

    def load_side_files(self, found: ResolvedCheckpoint, layout: Any) -> None:
        """``generation_config.json`` if present, else (release weights) LlamaGen's FID recipe for the model's size."""
        f = found.side_file("generation_config.json")
        if f is not None:
            self.generation_config = SamplingConfig.load(f)
        elif layout is not None:
            self.generation_config = dataclasses.replace(
                LLAMAGEN_RECIPE, cfg_scale=1.75 if self.config.dim >= 1280 else 2.0
            )
