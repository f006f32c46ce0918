"""HAR generator: official shapes, cached vs teacher-forced equality, step counts, schedules, errors."""

from __future__ import annotations

import pytest
import torch

from restok import HARGenerator
from restok.core import hierarchy as Hy
from restok.models.har.config import GENERATOR_PRESETS, generator_preset
from restok.sampling import cfg_values, filter_logits

from ..helpers import official_keys


def test_official_har_l_parameter_count_and_keys():
    with torch.device("meta"):
        gen = HARGenerator.from_preset("har-l")
    assert sum(p.numel() for p in gen.parameters()) == 326_263_808
    assert {k: tuple(v.shape) for k, v in gen.state_dict().items()} == official_keys("generator")


def test_presets_take_overrides():
    assert set(GENERATOR_PRESETS) >= {"har-b", "har-l", "har-xl", "har-xxl", "har-tiny"}
    cfg = generator_preset("har-b", num_tokens=64, vocab_size=4096, num_classes=10, ar_tokens=2)
    assert (cfg.dim, cfg.n_layer, cfg.num_tokens, cfg.vocab_size, cfg.num_classes, cfg.ar_tokens) == (
        768,
        12,
        64,
        4096,
        10,
        2,
    )
    assert cfg.num_steps == 2 + 5
    with pytest.raises(ValueError, match="ar_tokens"):
        generator_preset("har-tiny", ar_tokens=3)
    with pytest.raises(ValueError, match="unknown generator preset"):
        HARGenerator.from_preset("har-giant")


def test_initial_loss_is_log_vocab():
    torch.manual_seed(0)
    gen = HARGenerator.from_preset("har-tiny").eval()
    tokens = torch.randint(0, 1024, (2, 32))
    logits = gen(tokens, torch.tensor([0, 3]))
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 1024), tokens.reshape(-1))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(1024.0)).item(), abs=1e-5)


@pytest.mark.parametrize("ar_tokens", [4, 1, 32])
def test_cached_steps_equal_teacher_forced_logits(tiny_gen, ar_tokens):
    gen = HARGenerator(tiny_gen.config.replace(ar_tokens=ar_tokens)).eval()
    gen.load_state_dict(tiny_gen.state_dict(), strict=False) if ar_tokens != 32 else None
    torch.nn.init.normal_(gen.output.weight, std=0.5)
    tokens = torch.randint(0, 1024, (3, 32), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 5, 10])  # includes the null class
    with torch.no_grad():
        full = gen(tokens, labels)
        cache = gen.new_cache(3)
        class_emb = gen.cls_embedding(labels, train=False)
        parts = [gen.forward_step(tokens, class_emb, s, e, cache) for s, e in Hy.har_step_positions(32, ar_tokens)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=5e-5, rtol=1e-5)  # float32 reduction order


def _count_calls(gen: HARGenerator) -> list:
    """Record the (start, end) of every cached model call the sampler makes (it calls ``step_logits``)."""
    calls: list = []
    orig = gen.step_logits

    def step(tokens, class_emb, positions, mask, cache):  # noqa: ANN001, ANN202 - the patched method's own signature
        calls.append((int(positions[0]), int(positions[-1]) + 1))
        return orig(tokens, class_emb, positions, mask, cache)

    gen.step_logits = step  # type: ignore[method-assign]
    return calls


def test_model_calls_9_for_har128_and_128_for_vanilla():
    torch.manual_seed(0)
    har = HARGenerator.from_preset("har-tiny", num_tokens=128).eval()
    calls = _count_calls(har)
    out = har.generate([1, 2], cfg_scale=2.0)
    assert out.shape == (2, 128) and len(calls) == 9 == har.num_steps
    assert [e - s for s, e in calls] == [1, 1, 1, 1, 4, 8, 16, 32, 64]
    vanilla = HARGenerator.from_preset("har-tiny", num_tokens=128, ar_tokens=128).eval()
    assert vanilla.spe_tok_embeddings is None
    calls = _count_calls(vanilla)
    vanilla.generate([1])
    assert len(calls) == 128 == vanilla.num_steps


def test_schedule_values_at_every_step():
    eps = 1e-4  # the official sampler's offset where guidance is lowered (see restok.sampling)
    assert cfg_values("constant", 9, 3.0) == [3.0] * 9
    step = cfg_values("step", 9, 3.75, 0.25)  # ratios 0, 1/8, 2/8 ...: full scale from step 2 on
    assert step[:2] == pytest.approx([1.0 + eps] * 2, abs=1e-12) and step[2:] == [3.75] * 7
    assert cfg_values("step", 9, 1.0, 0.25) == [1.0] * 9
    lin = cfg_values("linear", 9, 3.0)
    assert lin == pytest.approx([1.0 + 2.0 * s / 8 + eps for s in range(9)], abs=1e-12)
    assert lin[0] == pytest.approx(1.0, abs=2e-4) and lin[-1] == pytest.approx(3.0, abs=2e-4)
    with pytest.raises(ValueError, match="unknown cfg_schedule"):
        cfg_values("cosine-ish", 9, 2.0)


def test_filter_logits_topk_then_topp():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7 so the 0.3 token is kept too
    assert (~torch.isinf(filter_logits(logits, top_p=0.4))).sum() == 1  # always keeps the top token
    assert torch.equal(filter_logits(logits, 0, 1.0), logits)


def test_same_seed_same_samples(tiny_gen):
    kw = dict(cfg_scale=3.0, cfg_schedule="linear", top_p=0.9, temperature=1.0)
    a = tiny_gen.generate([3, 4], generator=torch.Generator().manual_seed(7), **kw)
    b = tiny_gen.generate([3, 4], generator=torch.Generator().manual_seed(7), **kw)
    c = tiny_gen.generate([3, 4], generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_greedy_without_guidance_matches_teacher_forced_argmax(tiny_gen):
    out = tiny_gen.generate([2, 9], top_k=1)
    with torch.no_grad():
        logits = tiny_gen(out, torch.tensor([2, 9]))
    assert torch.equal(logits.argmax(-1), out)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"class_labels": [10]}, "unknown class id"),
        ({"class_labels": [-1]}, "unknown class id"),
        ({"class_labels": [1], "cfg_scale": 0.5}, "cfg_scale"),
        ({"class_labels": [1], "top_p": 0.0}, "top_p"),
        ({"class_labels": [1], "top_k": -1}, "top_k"),
        ({"class_labels": [1], "temperature": 0.0}, "temperature"),
        ({"class_labels": [1], "cfg_schedule": "cosine"}, "cfg_schedule"),
        ({"class_labels": [1], "cfg_start": 1.5}, "cfg_start"),
        ({"class_labels": [1.5]}, "integer"),
    ],
)
def test_bad_settings_raise(tiny_gen, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_gen.generate(**kwargs)


def test_forward_input_errors(tiny_gen):
    with pytest.raises(ValueError, match="\\[0, 1024\\)"):
        tiny_gen(torch.full((1, 32), 2000), torch.tensor([0]))
    with pytest.raises(ValueError, match="32 positions"):
        tiny_gen(torch.zeros(1, 20, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match="unknown class id"):
        tiny_gen(torch.zeros(1, 32, dtype=torch.long), torch.tensor([11]))


def test_tokenizer_generator_round_trip_tiny(tiny_tok, tiny_gen):
    assert tiny_gen.config.vocab_size == tiny_tok.codebook_size and tiny_gen.num_tokens == tiny_tok.num_tokens
    ids = tiny_gen.generate(
        [0, 1, 2],
        cfg_scale=2.0,
        cfg_schedule="step",
        cfg_start=0.25,
        top_p=0.95,
        generator=torch.Generator().manual_seed(0),
    )
    images = tiny_tok.decode(ids)
    assert images.shape == (3, 3, 32, 32)
    assert images.std() > 0
    coarse = tiny_tok.decode(ids[:, :4])
    assert coarse.shape == images.shape


def test_training_mode_drops_labels_and_backpropagates(tiny_gen):
    gen = tiny_gen.train()
    tokens = torch.randint(0, 1024, (4, 32))
    logits = gen(tokens, torch.tensor([0, 1, 2, 3]))
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 1024), tokens.reshape(-1))
    loss.backward()
    assert gen.spe_tok_embeddings.special_embeddings.weight.grad.abs().sum() > 0
    # rows the 32-token layout never uses get no gradient
    used = Hy.har_input_layout(32, 4).num_special
    assert gen.spe_tok_embeddings.special_embeddings.weight.grad[used:].abs().sum() == 0


def test_bf16_generator_keeps_float32_rope_and_runs(tiny_gen):
    gen = HARGenerator(tiny_gen.config).eval()
    gen.load_state_dict(tiny_gen.state_dict())
    gen = gen.to(torch.bfloat16)
    # the RoPE table follows the model but is never cast: float32, equal to the unrounded one
    assert gen.rope.cos.dtype == torch.float32 and torch.equal(gen.rope.cos, tiny_gen.rope.cos)
    assert "rope.cos" not in gen.state_dict() and gen.to("meta").rope.sin.device.type == "meta"
    gen = HARGenerator(tiny_gen.config).eval()
    gen.load_state_dict(tiny_gen.state_dict())
    gen = gen.to(torch.bfloat16)
    out = gen.generate([1, 2], cfg_scale=2.0, top_k=1)
    ref = tiny_gen.generate([1, 2], cfg_scale=2.0, top_k=1)
    assert out.shape == ref.shape and (out == ref).float().mean() > 0.5  # bf16 may flip a few near-ties


@pytest.mark.parametrize("ar_tokens", [4, 32])
def test_uncached_generation_gives_the_same_tokens(tiny_gen, ar_tokens):
    """Recomputing the full sequence every call (no KV cache) samples exactly what the cached path does."""
    gen = HARGenerator(tiny_gen.config.replace(ar_tokens=ar_tokens)).eval()
    gen.load_state_dict(tiny_gen.state_dict(), strict=False)
    labels = torch.tensor([1, 5, 9])
    kw = dict(cfg_scale=2.5, cfg_schedule="step", cfg_start=0.25, top_p=0.9)
    a = gen.generate(labels, generator=torch.Generator().manual_seed(3), **kw)
    b = gen.generate(labels, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
    assert torch.equal(a, b)
