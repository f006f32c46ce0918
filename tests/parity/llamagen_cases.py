"""LlamaGen's cases for ``make_family_fixtures.py llamagen``: the VQ tokenizer
(``tokenizer/tokenizer_image/vq_model.py``)
and the class-conditional GPT (``autoregressive/models/gpt.py`` + ``generate.py``), run from the repository on sys.path.

VQ: the repository's ``VQModel`` with its encoder/decoder built at width 32 (``ch`` is a constructor argument the
release classes fix at 128). GPT: teacher-forced logits of ``Transformer`` in eval mode and greedy samples
(``top_k=1``) of the repository's ``generate`` with and without guidance.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from make_official_fixtures import apply_seeded_weights, num_params

VQ_CASES: dict[str, dict[str, Any]] = {
    # VQ-16's five levels (16x downsampling), smaller: 64 px -> a 4x4 grid
    "llamagen_vq16": dict(
        ch=32, ch_mult=[1, 1, 2, 2, 4], z_channels=64, codebook_size=128, embed_dim=8, crop=64, batch=2, seed=3301
    ),
    # VQ-8's four levels: 32 px -> a 4x4 grid
    "llamagen_vq8": dict(
        ch=32, ch_mult=[1, 2, 2, 4], z_channels=32, codebook_size=64, embed_dim=8, crop=32, batch=3, seed=3302
    ),
}
GPT_CASES: dict[str, dict[str, Any]] = {
    # no n_kv_head: the repository's KV cache allocates n_head heads, so grouped-query models do not sample there (no
    # release uses them)
    "llamagen_gpt_a": dict(
        args=dict(dim=64, n_layer=2, n_head=4, vocab_size=64, block_size=16, num_classes=10), seed=3401
    ),
    "llamagen_gpt_b": dict(
        args=dict(dim=96, n_layer=3, n_head=6, vocab_size=100, block_size=36, num_classes=7), seed=3402
    ),
}
GREEDY_CFG = (1.0, 2.5)


@torch.no_grad()
def run_vq_case(case: dict[str, Any]) -> tuple[dict, dict]:
    """The repository's VQModel on seeded weights: ids and decoded pixels ([-1, 1] space, unclamped)."""
    import tokenizer.tokenizer_image.vq_model as vq

    enc, dec = vq.Encoder, vq.Decoder
    vq.Encoder, vq.Decoder = functools.partial(enc, ch=case["ch"]), functools.partial(dec, ch=case["ch"])
    try:
        args = vq.ModelArgs(
            codebook_size=case["codebook_size"],
            codebook_embed_dim=case["embed_dim"],
            encoder_ch_mult=case["ch_mult"],
            decoder_ch_mult=case["ch_mult"],
            z_channels=case["z_channels"],
        )
        torch.manual_seed(0)
        model = vq.VQModel(args).float().eval()
    finally:
        vq.Encoder, vq.Decoder = enc, dec
    shapes = apply_seeded_weights(model, case["seed"])
    b, s = case["batch"], case["crop"]
    images = torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(case["seed"] + 1))
    quant, _, (_, _, flat_ids) = model.encode(images * 2 - 1)
    ids = flat_ids.reshape(b, -1).to(torch.int64)
    decoded = model.decode_code(ids.reshape(-1), shape=tuple(quant.shape))
    meta = {
        "family": "llamagen-vq",
        "model_args": {
            k: getattr(args, k)
            for k in (
                "codebook_size",
                "codebook_embed_dim",
                "codebook_l2_norm",
                "encoder_ch_mult",
                "decoder_ch_mult",
                "z_channels",
            )
        },
        "ch": case["ch"],
        "image_size": s,
        "weight_seed": case["seed"],
        "state_dict_shapes": shapes,
        "num_params": num_params(model),
        "notes": [
            "images in [0, 1]; the repository model is given images * 2 - 1 (LlamaGen's normalisation)",
            "ids = encode(...)[2][2] reshaped (B, g*g), raster order",
            "decoded = decode_code(ids, shape) in [-1, 1] space, unclamped",
        ],
    }
    return meta, {"images": images, "ids": ids, "decoded": decoded}


@torch.no_grad()
def run_gpt_case(case: dict[str, Any]) -> tuple[dict, dict]:
    """The repository's GPT on seeded weights: teacher-forced logits and greedy generations."""
    import autoregressive.models.gpt as gpt
    from autoregressive.models.generate import generate

    args = gpt.ModelArgs(**case["args"])
    torch.manual_seed(0)
    model = gpt.Transformer(args).float().eval()
    shapes = apply_seeded_weights(model, case["seed"])
    L, V, C = args.block_size, args.vocab_size, args.num_classes
    tokens = torch.randint(0, V, (3, L), generator=torch.Generator().manual_seed(case["seed"] + 1))
    labels = torch.randint(0, C, (3,), generator=torch.Generator().manual_seed(case["seed"] + 2))
    logits = model(tokens[:, :-1], labels, input_pos=torch.arange(L))[0]  # (B, L, V): position p predicts token p
    tensors = {"tokens": tokens, "labels": labels, "logits": logits}
    for scale in GREEDY_CFG:
        torch.manual_seed(0)
        out = generate(model, labels, L, cfg_scale=scale, temperature=1.0, top_k=1, top_p=1.0)
        tensors[f"greedy_cfg{scale:g}"] = out.to(torch.int64)
    meta = {
        "family": "llamagen-gpt",
        "model_args": dict(case["args"]),
        "weight_seed": case["seed"],
        "state_dict_shapes": shapes,
        "num_params": num_params(model),
        "greedy_cfg": list(GREEDY_CFG),
        "notes": [
            "logits = model(tokens[:, :-1], labels, input_pos=arange(L))[0] in eval mode",
            "greedy_cfg{s} = generate(model, labels, L, cfg_scale=s, top_k=1) (constant guidance)",
        ],
    }
    return meta, tensors


def run_all() -> dict[str, tuple[dict, dict]]:
    """Every LlamaGen case."""
    out = {name: run_vq_case(case) for name, case in VQ_CASES.items()}
    out.update({name: run_gpt_case(case) for name, case in GPT_CASES.items()})
    return out
