"""Compiled inference (restok.sampling.compiled): one fullgraph graph per HAR step shape, tokens equal to eager, no
host synchronisation in the step loop, compiled and bf16-autocast decode, and compiled state the caller owns."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from restok import CompiledSampler, HARGenerator, ResTok
from restok.sampling import CompiledDecoder
from restok.sampling.compiled import decode_step, decode_tokens

from ..helpers import require_compiler


@pytest.fixture
def compiler() -> None:
    """Tests that run Inductor need a C++ compiler (skip locally without one, fail under CI)."""
    require_compiler()


# What reads a device value back to the host: .item()/int()/bool() of a tensor, and boolean-mask indexing.
SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal")


class _OpLog(TorchDispatchMode):
    """Names of the aten ops dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        self.ops.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


def _generator(**overrides) -> HARGenerator:
    torch.manual_seed(0)
    gen = HARGenerator.from_preset("har-tiny", **overrides).eval()
    torch.nn.init.normal_(gen.output.weight, std=0.05)  # non-degenerate logits (the init zeroes the head)
    return gen


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


RECIPES = {
    "greedy": dict(cfg_scale=2.0, top_k=1),
    "seeded, released-like": dict(cfg_scale=2.0, cfg_schedule="step", cfg_start=0.25, top_p=0.9),
    "seeded, top-k + linear": dict(cfg_scale=3.0, cfg_schedule="linear", top_k=50, temperature=0.9),
}


@pytest.mark.slow
def test_compiled_har_sampling_equals_eager_with_one_graph_per_step_shape(compiler) -> None:
    """Inductor's kernels, fp32 and under bf16 autocast: the eager tokens, one graph per step shape, reused by later
    calls, a kept prefix and an early stop. An 8-token HAR (calls of 1, 1, 1, 1 and 4 tokens: two shapes) keeps the
    number of graphs Inductor builds small."""
    torch._dynamo.reset()
    gen = _generator(num_tokens=8)
    labels = torch.tensor([0, 3, 7, 9])
    shapes = {b - a for a, b in gen.step_positions}  # (1, 1, 1, 1, 4)-token calls -> 2 shapes
    before = _graphs()
    for name, recipe in RECIPES.items():
        for seed in (0, 1):
            eager = gen.generate(labels, generator=torch.Generator().manual_seed(seed), **recipe)
            comp = gen.generate(labels, generator=torch.Generator().manual_seed(seed), compile=True, **recipe)
            assert torch.equal(eager, comp), (name, seed)
    # every recipe is guided, so runs at batch 8 ([cond; uncond]): one graph per step shape, whatever the recipe
    assert _graphs() - before == len(shapes) == 2
    n = _graphs()
    again = gen.generate(labels, generator=torch.Generator().manual_seed(5), compile=True, **RECIPES["greedy"])
    assert _graphs() == n  # reused: no recompilation on later calls
    assert torch.equal(again, gen.generate(labels, generator=torch.Generator().manual_seed(5), **RECIPES["greedy"]))
    # coarse-kept variations (a prefilled prefix) and an early stop take the same compiled steps
    kw = dict(prefix=again[:, :4], **RECIPES["seeded, released-like"])
    assert torch.equal(
        gen.generate(labels, generator=torch.Generator().manual_seed(2), **kw),
        gen.generate(labels, generator=torch.Generator().manual_seed(2), compile=True, **kw),
    )
    assert torch.equal(
        gen.generate(labels, generator=torch.Generator().manual_seed(2), num_tokens=2, **RECIPES["greedy"]),
        gen.generate(
            labels, generator=torch.Generator().manual_seed(2), num_tokens=2, compile=True, **RECIPES["greedy"]
        ),
    )
    assert _graphs() == n  # the prefix of 4 runs the 4-token step's graph
    # under bf16 autocast (as the official sampling script runs its GPT): low-precision intermediates are rounded
    # where eager rounds them, so the tokens are eager's too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kw = RECIPES["seeded, released-like"]
        assert torch.equal(
            gen.generate(labels, generator=torch.Generator().manual_seed(3), **kw),
            gen.generate(labels, generator=torch.Generator().manual_seed(3), compile=True, **kw),
        )
    with pytest.raises(ValueError, match="use_cache=False"):
        gen.generate(labels, compile=True, use_cache=False)
    # the compiled state is the caller's: a sampler kept for many calls, nothing stored on the model
    sampler = CompiledSampler(gen, 8)  # guided: [cond; uncond] rows of 4 samples
    kw, n = RECIPES["seeded, top-k + linear"], _graphs()
    for seed in (6, 7):
        assert torch.equal(
            gen.generate(labels, generator=torch.Generator().manual_seed(seed), sampler=sampler, **kw),
            gen.generate(labels, generator=torch.Generator().manual_seed(seed), **kw),
        )
    assert _graphs() == n  # the kept sampler replays the graphs compiled above
    assert not [
        k for k, v in vars(gen).items() if "compile" in k or isinstance(v, CompiledSampler)
    ]  # no state on the model
    with pytest.raises(ValueError, match="batch of 8"):
        gen.generate(labels[:2], sampler=sampler, **kw)
    gen.to(torch.bfloat16)
    with pytest.raises(ValueError, match="moved or cast"):
        gen.generate(labels, sampler=sampler, **kw)


def test_vanilla_ar_compiles_one_graph_for_all_its_calls() -> None:
    """The graph structure does not depend on the backend: Dynamo's own (``eager``) shows it without Inductor's cost."""
    torch._dynamo.reset()
    gen = _generator(ar_tokens=32)
    assert gen.num_steps == 32
    before = _graphs()
    eager = gen.generate([1, 2], top_k=1)
    assert torch.equal(gen.generate([1, 2], top_k=1, sampler=CompiledSampler(gen, 2, backend="eager")), eager)
    assert _graphs() - before == 1  # 32 calls of one token each: the positions are inputs, not constants


def test_the_sampling_loop_never_reads_back_from_the_device() -> None:
    """After the first call, the loop (model step, guidance, temperature, top-k, top-p, multinomial, writes) runs no op
    that would make the host wait for a GPU; the validation before the loop may."""
    gen = _generator()
    log = _OpLog()

    def start(step: int, tokens: torch.Tensor, end: int) -> None:
        if step == 0:
            log.__enter__()

    try:
        gen.generate(
            [1, 2, 3],
            cfg_scale=3.0,
            cfg_schedule="step",
            cfg_start=0.25,
            top_k=20,
            top_p=0.9,
            temperature=0.8,
            generator=torch.Generator().manual_seed(0),
            callback=start,
        )
    finally:
        log.__exit__(None, None, None)
    assert "multinomial" in log.ops and "index_copy_" in log.ops and "masked_fill" in log.ops  # the loop was seen
    assert not [op for op in log.ops if op in SYNCING_OPS]


@pytest.mark.slow
def test_compiled_decode_and_bf16_autocast_keep_the_pixel_decoder_float32() -> None:
    """The compiled decode (one whole graph per batch size and prefix length) gives the eager pixels. Traced by
    AOTAutograd (``aot_eager``): Inductor's first compile of the decoder costs over a minute on a cold 2-core machine,
    and Inductor's rounding against eager is what the sampling test above checks."""
    torch.manual_seed(0)
    tok = ResTok.from_preset("restok-tiny").eval()
    ids = torch.randint(0, tok.codebook_size, (2, 32))
    for k in (8, 32):  # a prefix (the masked positions are inputs of the graph too) and every token
        eager = tok.decode(ids[:, :k])
        comp = CompiledDecoder(tok, backend="aot_eager")(ids[:, :k], k, torch.float32)
        assert comp.dtype == torch.float32 and (comp - eager).abs().max() < 1e-4, k
    seen: list[torch.dtype] = []
    hook = tok.pixel_decoder.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    vit: list[torch.dtype] = []
    linear = tok.decoder.blocks[0].mlp.fc1
    hook2 = linear.register_forward_hook(lambda m, a, o: vit.append(o.dtype))
    try:
        bf = tok.decode(ids, autocast=torch.bfloat16)
        half_pixels = tok.decode(ids, autocast=torch.bfloat16, pixel_dtype=torch.bfloat16)
    finally:
        hook.remove()
        hook2.remove()
    assert vit == [torch.bfloat16, torch.bfloat16]  # the ViT's matmuls ran in bf16 ...
    assert seen[0] == torch.float32  # ... the pixel decoder in float32 unless told otherwise
    eager = tok.decode(ids)
    assert bf.dtype == half_pixels.dtype == torch.float32
    assert 0 < (bf - eager).abs().max() < 0.1 and 0 < (half_pixels - eager).abs().max() < 0.1
    assert torch.equal(tok.encode(eager), tok.encode(eager))
    with pytest.raises(ValueError, match="autocast"):
        tok.decode(ids, autocast=torch.float64)


def test_float32_pixels_after_bf16_pixels_reuse_no_bf16_weights() -> None:
    """The pixel decoder caches its rewritten conv weights; one folded under bf16 autocast must not serve a later
    float32 decode (found by the GPU suite's rehearsal: a dtype error, or silently bf16 weights)."""
    torch.manual_seed(0)
    tok = ResTok.from_preset("restok-tiny").eval()
    ids = torch.randint(0, tok.codebook_size, (2, 32))
    fresh = ResTok.from_preset("restok-tiny").eval()
    fresh.load_state_dict(tok.state_dict())
    tok.decode(ids, pixel_dtype=torch.bfloat16)
    assert torch.equal(tok.decode(ids), fresh.decode(ids))


@pytest.mark.slow
def test_each_step_and_the_decode_trace_as_one_graph_without_breaks() -> None:
    """``torch._dynamo.explain`` of a HAR step and of the decode: one graph, no graph break (what fullgraph
    enforces)."""
    torch._dynamo.reset()
    gen = _generator()
    labels = torch.tensor([1, 2])
    emb = gen.embed_labels(labels)
    seq = torch.zeros(2, gen.num_tokens, dtype=torch.long)
    cache = gen.new_cache(2)
    for a, b in gen.step_positions[:5]:
        ex = torch._dynamo.explain(decode_step)(gen, seq, emb, torch.arange(a, b), gen.step_mask(a, b), cache)
        assert ex.graph_count == 1 and ex.graph_break_count == 0, (a, b, ex.break_reasons)
    tok = ResTok.from_preset("restok-tiny").eval()
    ids = torch.randint(0, tok.codebook_size, (2, 8))
    ex = torch._dynamo.explain(decode_tokens)(tok, ids, 8, torch.float32)
    assert ex.graph_count == 1 and ex.graph_break_count == 0, ex.break_reasons
