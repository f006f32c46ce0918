"""The token hierarchy of ResTok and HAR: the one source of truth for level sizes, masks and positions.

Everything structural that the tokenizer, the generator, the sampler and the training code need is
derived here from a handful of integers (token count, minimum prefix, encoder depth and stages, image
grid), as small pure functions. Nothing else in the package rebuilds these lists.

Vocabulary used below:
- *latent level*: a group of latent tokens; for ``L`` tokens the sizes are ``1, 1, 2, 4, ..., L/2``
  (Sec. 3.3, Fig. 2b). Their cumulative ends ``1, 2, 4, ..., L`` are the nested prefixes.
- *image-token level*: after the encoder's residual merges (Alg. 2) the image tokens form ``S`` levels,
  coarse to fine; the official code halves only the grid *width* at each merge.
- *HAR step*: one generator call; the first ``A`` tokens are predicted one by one, then one latent
  level per call (Sec. 4, Fig. 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch

__all__ = [
    "is_power_of_two",
    "latent_level_sizes",
    "latent_level_bounds",
    "latent_level_of_position",
    "pooled_grid",
    "latent_pool_grids",
    "prefix_lengths",
    "select_prefixes",
    "nested_dropout_probs",
    "merge_layers",
    "image_level_grids",
    "hierarchical_causal_mask",
    "encoder_block_sizes",
    "encoder_position_ids",
    "decoder_position_ids",
    "har_num_steps",
    "har_step_positions",
    "har_input_layout",
    "har_attention_mask",
    "HARInput",
]


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, ..."""
    return isinstance(n, int) and n > 0 and (n & (n - 1)) == 0


def _check_num_tokens(num_tokens: int) -> None:
    """Raise unless ``num_tokens`` is a power of two >= 2 (the level sizes need it)."""
    if not is_power_of_two(num_tokens) or num_tokens < 2:
        raise ValueError(f"num_tokens must be a power of two >= 2 (e.g. 32, 128), got {num_tokens!r}")


@cache
def latent_level_sizes(num_tokens: int) -> tuple[int, ...]:
    """Latent level sizes ``(1, 1, 2, 4, ..., L/2)``: the first two levels hold one token each (Sec. 3.3)."""
    _check_num_tokens(num_tokens)
    sizes = [1]
    while sum(sizes) < num_tokens:
        sizes.append(sum(sizes))
    return tuple(sizes)


@cache
def latent_level_bounds(num_tokens: int) -> tuple[tuple[int, int], ...]:
    """``(start, end)`` of each latent level in the token sequence."""
    bounds, start = [], 0
    for n in latent_level_sizes(num_tokens):
        bounds.append((start, start + n))
        start += n
    return tuple(bounds)


@cache
def latent_level_of_position(num_tokens: int) -> tuple[int, ...]:
    """The latent level index of every token position ``0..L-1``."""
    return tuple(lvl for lvl, (s, e) in enumerate(latent_level_bounds(num_tokens)) for _ in range(s, e))


def pooled_grid(count: int) -> tuple[int, int]:
    """Pooled grid ``(h, w)`` holding ``count`` latent tokens; Alg. 1 doubles w, then h, alternately."""
    if not is_power_of_two(count):
        raise ValueError(f"a latent level size must be a power of two, got {count}")
    k = count.bit_length() - 1
    return (1 << (k // 2), 1 << (k - k // 2))


@cache
def latent_pool_grids(num_tokens: int) -> tuple[tuple[int, int], ...]:
    """The pooled grid of each latent level (Alg. 1): (1,1), (1,1), (1,2), (2,2), (2,4), ..."""
    return tuple(pooled_grid(n) for n in latent_level_sizes(num_tokens))


@cache
def prefix_lengths(num_tokens: int, min_tokens: int) -> tuple[int, ...]:
    """Allowed numbers of kept tokens (nested prefixes): level ends ``>= min_tokens``, e.g. 4, 8, ..., 128."""
    ends = tuple(e for _, e in latent_level_bounds(num_tokens))
    if min_tokens not in ends:
        raise ValueError(
            f"min_tokens must be one of the level boundaries {list(ends)} for {num_tokens} tokens, got {min_tokens}"
        )
    return tuple(e for e in ends if e >= min_tokens)


def parse_prefix_spec(spec: int | str | tuple[int, ...] | list[int] | None) -> int | str | tuple[int, ...] | None:
    """The prefix lengths as written (one grammar for every command and API): None, a number, ``"all"``, or a comma
    list such as ``"4,8,16"`` (a tuple); a ValueError says what is expected."""
    if not isinstance(spec, str) or spec == "all":
        return spec
    try:
        ks = tuple(sorted({int(v) for v in spec.split(",")}))
    except ValueError:
        raise ValueError(f"must be a number, a comma list of numbers or 'all', got {spec!r}") from None
    return ks[0] if len(ks) == 1 else ks


def select_prefixes(
    spec: int | str | tuple[int, ...] | list[int] | None,
    allowed: tuple[int, ...],
    decodable: Callable[[int], bool] | None = None,
    describe: str | None = None,
) -> list[int]:
    """The prefix lengths a user asks for, in increasing order: None (the longest), one length, several, or ``"all"``
    (the ``allowed`` budgets); a ValueError names the ones that are not among ``allowed`` (or, for tokenizers whose
    every prefix decodes such as One-D-Piece, that ``decodable`` refuses)."""
    if spec is None:
        return [allowed[-1]]
    if spec == "all":
        return list(allowed)
    ks = sorted({int(spec)} if isinstance(spec, int) else {int(k) for k in spec})  # type: ignore[union-attr]
    ok = decodable or (lambda k: k in allowed)
    bad = [k for k in ks if not ok(k)]
    if bad or not ks:
        raise ValueError(
            f"prefix length(s) {bad or ks} not allowed: " + (describe or f"choose from {list(allowed)}") + " or 'all'"
        )
    return ks


def nested_dropout_probs(num_tokens: int, min_tokens: int, drop_prob: float) -> tuple[float, ...]:
    """Keep probabilities of each prefix length in training (App. A.2, Tab. 9), as the official code sets them.

    Shorter prefixes get weights 1, 2, 4, ...; the full length gets ``(sum of those) * (int(1/p) - 1)``,
    so with ``p = 0.2`` the full sequence is kept 80% of the time.
    """
    n = len(prefix_lengths(num_tokens, min_tokens))
    if not 0.0 < drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in (0, 1] when nested dropout is on, got {drop_prob}")
    weights = [2**i for i in range(n - 1)]
    weights.append(sum(weights) * (int(1 / drop_prob) - 1))
    total = sum(weights)
    if total == 0:
        return tuple([0.0] * (n - 1) + [1.0])
    return tuple(w / total for w in weights)


@cache
def merge_layers(depth: int, stages: int) -> tuple[int, ...]:
    """0-based encoder layers that end with a residual merge: every ``N/S`` layers but the last (Sec. 3.2).

    Computed with the official float expression ``int(i / S * N) - 1`` so odd depths round the same way.
    """
    if stages < 1:
        raise ValueError(f"hierarchy stages must be >= 1, got {stages}")
    layers = tuple(int(i / stages * depth) - 1 for i in range(1, stages))
    if any(i < 0 for i in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"an encoder of depth {depth} cannot hold {stages} hierarchy stages (merge layers {layers})")
    return layers


@cache
def image_level_grids(grid: tuple[int, int], stages: int, factor: int = 2) -> tuple[tuple[int, int], ...]:
    """Image-token grids after all merges, coarse to fine, e.g. (16,2), (16,4), (16,8), (16,16) for pooling factor 2.

    The official merge is a 1-D nearest interpolation of the flattened coarsest level to ``n / factor`` tokens
    (``reduction_ratio = 1 - 1/factor``): it keeps every ``factor``-th token, i.e. every ``factor``-th column while
    the width allows (only the width shrinks), then, on a one-column grid, every ``factor``-th row; factor 1 keeps
    every token (Table 3's "no pooling"). The paper's Fig. 2c average pooling is not what the weights were trained
    with.
    """
    if factor < 1:
        raise ValueError(f"the pooling factor must be >= 1, got {factor}")
    h, w = grid
    grids = [(h, w)]
    for _ in range(stages - 1):
        ch, cw = grids[0]
        if cw % factor == 0:
            grids.insert(0, (ch, cw // factor))
        elif factor % cw == 0 and ch % (factor // cw) == 0:  # every factor-th flat token: column 0 of every row step
            grids.insert(0, (ch // (factor // cw), 1))
        else:
            raise ValueError(
                f"an image grid of {h}x{w} cannot be merged {stages - 1} times by a pooling factor of {factor} "
                f"(a {ch}x{cw} level does not split into groups of {factor})"
            )
    return tuple(grids)


def hierarchical_causal_mask(block_sizes: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Boolean ``[N, N]`` mask (True = may attend): query i sees key j iff block(i) >= block(j) (Fig. 8a)."""
    levels = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(block_sizes)])
    return levels[:, None] >= levels[None, :]


def encoder_block_sizes(image_grids: tuple[tuple[int, int], ...], num_tokens: int) -> tuple[int, ...]:
    """Encoder mask blocks: image-token levels coarse to fine, then the latent levels."""
    return tuple(h * w for h, w in image_grids) + latent_level_sizes(num_tokens)


def _grid_ids(h: int, w: int, offset: int) -> torch.Tensor:
    """Row-major ``(row + offset, col + offset)`` ids of an ``h x w`` grid, shape ``[h*w, 2]``."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=-1) + offset


def _text_ids(n: int, offset: int) -> torch.Tensor:
    """1-D "text" ids repeated on both axes, shape ``[n, 2]``."""
    t = torch.arange(n) + offset
    return torch.stack([t, t], dim=-1)


def encoder_position_ids(image_grids: tuple[tuple[int, int], ...], num_tokens: int) -> torch.Tensor:
    """2-D M-RoPE ids ``[N, 2]`` of the encoder sequence (Fig. 9): image grids coarse to fine, then latents.

    Each grid is offset by the running *token count* before it (not max id + 1 as in Qwen2-VL), as in the
    official code.
    """
    parts, offset = [], 0
    for h, w in image_grids:
        parts.append(_grid_ids(h, w, offset))
        offset += h * w
    parts.append(_text_ids(num_tokens, offset))
    return torch.cat(parts)


def decoder_position_ids(grid: tuple[int, int], num_tokens: int) -> torch.Tensor:
    """2-D M-RoPE ids ``[L + h*w, 2]`` of the decoder sequence: latents ``(t, t)``, then the query grid."""
    return torch.cat([_text_ids(num_tokens, 0), _grid_ids(grid[0], grid[1], num_tokens)])


# ----------------------------------------------------------------------------------------------------
# HAR generator (Sec. 4, Fig. 4, Fig. 8b)


def _check_ar_tokens(num_tokens: int, ar_tokens: int) -> None:
    """Raise unless ``ar_tokens`` is a level boundary (a power of two <= L); plain next-token prediction
    (``ar_tokens == num_tokens``, e.g. LlamaGen's 16x16 or 24x24 grids) takes any length >= 2."""
    if ar_tokens == num_tokens and isinstance(num_tokens, int) and not isinstance(num_tokens, bool) and num_tokens >= 2:
        return
    _check_num_tokens(num_tokens)
    if not is_power_of_two(ar_tokens) or ar_tokens > num_tokens:
        raise ValueError(f"ar_tokens must be a power of two between 1 and num_tokens={num_tokens}, got {ar_tokens!r}")


@cache
def har_step_positions(num_tokens: int, ar_tokens: int) -> tuple[tuple[int, int], ...]:
    """``(start, end)`` token positions predicted by each generator call.

    The first ``A`` tokens one by one, then one latent level per call: for 128 tokens and A = 4,
    ``[0], [1], [2], [3], [4..7], [8..15], ..., [64..127]`` (9 calls). With ``A = L`` it is plain
    next-token prediction (L calls).
    """
    _check_ar_tokens(num_tokens, ar_tokens)
    steps = [(p, p + 1) for p in range(ar_tokens)]
    if ar_tokens < num_tokens:
        steps += [(s, e) for s, e in latent_level_bounds(num_tokens) if s >= ar_tokens]
    return tuple(steps)


def har_num_steps(num_tokens: int, ar_tokens: int) -> int:
    """Number of generator calls: ``A + log2(L / A)``; 9 for 128 tokens with A = 4, L for vanilla AR."""
    return len(har_step_positions(num_tokens, ar_tokens))


@dataclass(frozen=True)
class HARInput:
    """What each sequence position of the generator is fed (Fig. 4).

    ``kind[p]`` is 0 for the class token, 1 for a real token and 2 for a special ("mask") token;
    ``index[p]`` is the token position (kind 1) or the special-embedding row (kind 2).
    """

    kind: tuple[int, ...]
    index: tuple[int, ...]

    CLASS: int = 0
    TOKEN: int = 1
    SPECIAL: int = 2

    @property
    def num_special(self) -> int:
        """Number of special embeddings the layout uses."""
        return max((i + 1 for k, i in zip(self.kind, self.index) if k == self.SPECIAL), default=0)


@cache
def har_input_layout(num_tokens: int, ar_tokens: int) -> HARInput:
    """Input of each position ``p`` (position p predicts token p).

    Position 0 is the class token; positions ``1..A`` take tokens ``0..A-1`` (next-token prediction).
    A HAR group that predicts the level at positions ``[s, 2s)`` is fed the previous level's real
    tokens followed by special tokens, one learned embedding per missing position, numbered
    ``p - s - 1`` (the official code stacks real and special tokens, despite calling it "interleaved").
    The first HAR group (``s = A``) has only the last next-token input, ``t_{A-1}``.
    """
    _check_ar_tokens(num_tokens, ar_tokens)
    kind, index = [HARInput.CLASS], [0]
    for p in range(1, num_tokens):
        if p <= ar_tokens:
            kind.append(HARInput.TOKEN)
            index.append(p - 1)
            continue
        s = 1 << (p.bit_length() - 1)  # start of the level holding p (levels are [s, 2s) for s >= 1)
        real = 1 if s == ar_tokens else s // 2
        if p < s + real:
            kind.append(HARInput.TOKEN)
            index.append(p - s // 2 if s > ar_tokens else ar_tokens - 1)
        else:
            kind.append(HARInput.SPECIAL)
            index.append(p - s - 1)
    return HARInput(tuple(kind), tuple(index))


def har_attention_mask(num_tokens: int, ar_tokens: int) -> torch.Tensor:
    """Boolean ``[L, L]`` grouped mask (Fig. 8b): positions ``< A`` causal; a HAR group sees every earlier
    position and its whole own group (bidirectional inside the group)."""
    _check_ar_tokens(num_tokens, ar_tokens)
    if ar_tokens == num_tokens:  # plain next-token prediction: causal
        return torch.ones(num_tokens, num_tokens, dtype=torch.bool).tril()
    level = torch.tensor(latent_level_of_position(num_tokens))
    mask = level[None, :] <= level[:, None]  # (L, L): key level <= query level
    mask[:ar_tokens, :] = False
    mask[:ar_tokens, :ar_tokens] = torch.ones(ar_tokens, ar_tokens, dtype=torch.bool).tril()
    return mask
