"""Side by side with the official code (github Kwai-Kolors/ResTok): the same seeded weights and inputs
through both implementations; outputs are checked to agree first, then timed (the two sides in turn, round
after round, fastest of ``--repeat`` rounds each), and the ratio ours/official printed. The official checkout
is only put on ``sys.path`` at run time (never copied here).

    # an interpreter with the official code's dependencies (timm, omegaconf, einops, ...) and restok installed
    python benchmarks/vs_official.py --official /path/to/ResTok --size small
    python benchmarks/vs_official.py --official /path/to/ResTok --size full --tok-batches 1 --sample-batches 16

Sizes: ``small`` = ViT-small tokenizer at 128 px with 32 tokens (the official pixel CNN) + GPT-B HAR;
``full`` = the released configuration (restok_l_128, 660 M, + GPT-L HAR, 326 M). Sampling uses the
released recipe (step guidance 3.75 from 0.25, top-p 0.95); agreement is checked with greedy decoding.
Training steps (MSE + quantizer / cross-entropy, then each trainer's optimizer: the official trainers' default
``torch.optim.AdamW``, restok's ``build_optimizer``) run one configuration per process for peak memory.

``--gen-dtype bf16`` samples as the official sampling script does by default (GPT weights cast to bfloat16,
tokenizer in float32) on both sides; agreement is then checked on teacher-forced logits (bf16 tolerance) and the
share of identical greedy tokens is printed instead of requiring all. The last columns add restok's opt-in
bfloat16 pixel decoder (``decode(ids, pixel_dtype=torch.bfloat16)``), with its PSNR against the float32 decode.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import device_from, machine, peak_memory_mb, print_table, timeit, timeit_interleaved  # noqa: E402

SIZES = {
    "small": {
        "tok": dict(model_size="small", tokens=32, crop=128, stages=4),
        "gen": dict(dim=768, n_layer=12, n_head=12),
    },
    "full": {
        "tok": dict(model_size="large", tokens=128, crop=256, stages=4),
        "gen": dict(dim=1024, n_layer=24, n_head=16),
    },
}
RELEASED = dict(cfg_scale=3.75, cfg_schedule="step", cfg_start=0.25, top_p=0.95)


def _fixture_maker() -> Any:
    """The parity fixture maker (torchvision stub, seeded weights), imported by path."""
    spec = importlib.util.spec_from_file_location("mk", HERE.parent / "tests" / "parity" / "make_official_fixtures.py")
    mk = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mk)
    return mk


def build_pair_tokenizer(mk: Any, official: Path, size: str) -> tuple[Any, Any]:
    """(official, ours) tokenizers with the same seeded weights, ours loaded through the official layout."""
    import modeling.restok as restok_module
    from omegaconf import OmegaConf

    from restok import ResTok

    t = SIZES[size]["tok"]
    cfg = OmegaConf.load(official / "configs/infer/ResTok/llamagen_l_c2i_restok_l_128.yaml")
    cfg.experiment.tokenizer_checkpoint = ""
    vq = cfg.model.vq_model
    vq.vit_enc_model_size = vq.vit_dec_model_size = t["model_size"]
    vq.num_latent_tokens = vq.test_num_latent_tokens = t["tokens"]
    vq.hierarchy_stages = t["stages"]
    cfg.dataset.preprocessing.crop_size = t["crop"]
    torch.manual_seed(0)
    off = restok_module.ResTok(cfg).float().eval()
    mk.apply_seeded_weights(off, 11)
    with tempfile.TemporaryDirectory() as d:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in off.state_dict().items()}, f"{d}/model.safetensors")
        Path(d, "config.json").write_text(json.dumps(OmegaConf.to_container(cfg)))
        ours = ResTok.from_pretrained(d).eval()
    return off, ours


def build_pair_generator(mk: Any, size: str, tokens: int) -> tuple[Any, Any]:
    """(official, ours) GPT HAR generators with the same seeded weights."""
    import autoregressive.models.gpt_har as gpt

    from restok import HARGenerator

    g = SIZES[size]["gen"]
    args = gpt.ModelArgs(
        **g,
        vocab_size=8192,
        block_size=tokens,
        num_classes=1000,
        cls_token_num=1,
        model_type="c2i",
        ar_token_num=4,
        spe_token_num=tokens - 1,
    )
    torch.manual_seed(0)
    off = gpt.Transformer(args).float().eval()
    mk.apply_seeded_weights(off, 12)
    with tempfile.TemporaryDirectory() as d:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in off.state_dict().items()}, f"{d}/model.safetensors")
        Path(d, "config.json").write_text(json.dumps({k: getattr(args, k) for k in args.__dataclass_fields__}))
        ours = HARGenerator.from_pretrained(d).eval()
    return off, ours


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR (dB) of images in [0, 1]."""
    mse = (a.float() - b.float()).square().flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())


def official_generate(off: Any, labels: torch.Tensor, greedy: bool) -> torch.Tensor:
    """The official ``generate_har`` with the released recipe (or greedy)."""
    L = off.block_size if hasattr(off, "block_size") else off.config.block_size
    steps = 4 + (L.bit_length() - 1) - 2
    return off.generate(
        condition=labels,
        num_sample_steps=L,
        guidance_scale=RELEASED["cfg_scale"],
        guidance_decay="step",
        cfg_schedule_kwargs={"num_steps": steps, "window_start": RELEASED["cfg_start"], "min_cfg_scale": 1.0},
        top_k=1 if greedy else 0,
        top_p=1.0 if greedy else RELEASED["top_p"],
        randomize_temperature=1.0,
    ).to(torch.int64)


def train_worker(official: Path, size: str, which: str, kind: str, batch: int, repeat: int, dev: torch.device) -> dict:
    """One model's training step in this (fresh) process: seconds and peak memory (RSS on CPU)."""
    mk = _fixture_maker()
    mk.install_official_paths(official)
    if kind == "tokenizer":
        off, ours = build_pair_tokenizer(mk, official, size)
        model = (off if which == "official" else ours).train()
        S = SIZES[size]["tok"]["crop"]
        x = torch.rand(batch, 3, S, S, generator=torch.Generator().manual_seed(0)).to(dev)

        def loss_fn() -> torch.Tensor:
            if which == "official":
                rec, res = model(x)
                return F.mse_loss(rec, x) + res["quantizer_loss"].mean()
            out = model(x, kept_tokens=model.num_tokens)
            return F.mse_loss(out.reconstruction, x) + out.quantizer_loss
    else:
        L = SIZES[size]["tok"]["tokens"]
        off, ours = build_pair_generator(mk, size, L)
        model = (off if which == "official" else ours).train()
        t = torch.randint(0, 8192, (batch, L), generator=torch.Generator().manual_seed(0)).to(dev)
        y = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(1)).to(dev)

        def loss_fn() -> torch.Tensor:
            logits = model(idx=t, cond_idx=y)[0] if which == "official" else model(t, y)
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), t.reshape(-1))

    del off, ours
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if which == "official":
        opt = torch.optim.AdamW(params, lr=1e-4)  # as the official trainers build it (utils/train_utils.py)
    else:
        from restok.train.config import OptimConfig
        from restok.train.optim import build_optimizer

        opt = build_optimizer(params, OptimConfig(lr=1e-4))  # as restok's trainers build it

    def step() -> None:
        loss_fn().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    mem = peak_memory_mb(step, dev)
    return {"seconds": timeit(step, dev, warmup=0, repeat=repeat), "peak_mb": mem}


@torch.no_grad()
def main() -> None:
    """Check agreement, time both, print ratio tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="local checkout of Kwai-Kolors/ResTok")
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--tok-batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--sample-batches", type=int, nargs="+", default=[16])
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--skip", nargs="*", default=[], choices=["tokenizer", "sampling", "train"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    ap.add_argument(
        "--gen-dtype",
        choices=["fp32", "bf16"],
        default="fp32",
        help="GPT weights' dtype for sampling (bf16 = the official sampling script's default)",
    )
    ap.add_argument("--worker", nargs=3, metavar=("WHICH", "KIND", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        which, kind, batch = args.worker
        with torch.enable_grad():
            print(
                json.dumps(
                    train_worker(
                        args.official, args.size, which, kind, int(batch), args.repeat, device_from(args.device)
                    )
                )
            )
        return
    mk = _fixture_maker()
    mk.install_official_paths(args.official)
    print(
        f"machine: {machine()}; device: {device_from(args.device)}; size: {args.size}; official checkout: "
        f"{args.official}"
    )
    dev = device_from(args.device)
    off_tok, tok = build_pair_tokenizer(mk, args.official, args.size)
    off_tok.to(dev), tok.to(dev)
    S = SIZES[args.size]["tok"]["crop"]
    if "tokenizer" not in args.skip:
        rows = []
        for B in args.tok_batches:
            x = torch.rand(B, 3, S, S, generator=torch.Generator().manual_seed(B)).to(dev)
            ids = tok.encode(x)
            zq, res = off_tok.encode(x)
            same = torch.equal(ids, res["min_encoding_indices"].reshape(B, -1).long())
            diff = (tok.decode(ids) - off_tok.decode(zq)[0].clamp(0, 1)).abs().max().item()
            if not same or diff > 1e-3:
                raise SystemExit(f"outputs disagree at batch {B}: tokens identical {same}, max pixel diff {diff:.2e}")
            t_enc_o, t_dec_o, t_enc, t_dec = timeit_interleaved(
                [lambda: off_tok.encode(x), lambda: off_tok.decode(zq), lambda: tok.encode(x), lambda: tok.decode(ids)],
                dev,
                repeat=args.repeat,
            )
            rows.append(
                [
                    B,
                    "yes",
                    f"{diff:.1e}",
                    B / (t_enc_o + t_dec_o),
                    B / (t_enc + t_dec),
                    (t_enc_o + t_dec_o) / (t_enc + t_dec),
                    t_enc_o / t_enc,
                    t_dec_o / t_dec,
                ]
            )
        print_table(
            f"Tokenizer encode+decode, ours vs official ({args.size}, fp32)",
            [
                "batch",
                "tokens identical",
                "max pixel diff",
                "official img/s",
                "ours img/s",
                "speed-up",
                "encode x",
                "decode x",
            ],
            rows,
        )
    if "sampling" not in args.skip:
        L = SIZES[args.size]["tok"]["tokens"]
        off_gen, gen = build_pair_generator(mk, args.size, L)
        gdt = torch.bfloat16 if args.gen_dtype == "bf16" else torch.float32
        off_gen.to(dev, gdt), gen.to(dev, gdt)
        labels2 = torch.tensor([207, 360], device=dev)
        ours_greedy = gen.generate(
            labels2, top_k=1, cfg_scale=RELEASED["cfg_scale"], cfg_schedule="step", cfg_start=0.25
        )
        agree = (ours_greedy == official_generate(off_gen, labels2, greedy=True)).float().mean().item()
        if gdt == torch.float32 and agree < 1.0:
            raise SystemExit("greedy HAR tokens differ between the implementations")
        if gdt != torch.float32:  # bf16: the two op orders round differently, so compare logits, not argmaxes
            t = torch.randint(0, 8192, (2, L), generator=torch.Generator().manual_seed(5)).to(dev)
            lo, lu = off_gen(idx=t, cond_idx=labels2)[0].float(), gen(t, labels2).float()
            rel = ((lo - lu).norm() / lo.norm()).item()
            if rel > 2e-2:
                raise SystemExit(f"bf16 teacher-forced logits disagree: relative difference {rel:.3g}")
        rows = []
        for B in args.sample_batches:
            labels = torch.arange(B, device=dev) * 37 % 1000
            ids = gen.generate(labels, generator=torch.Generator(dev).manual_seed(0), **RELEASED)
            t_tok_o, t_tok, t_dec_o, t_dec, t_dec16 = timeit_interleaved(
                [
                    lambda: official_generate(off_gen, labels, greedy=False),
                    lambda: gen.generate(labels, generator=torch.Generator(dev).manual_seed(0), **RELEASED),
                    lambda: off_tok.decode_tokens(ids),
                    lambda: tok.decode(ids),
                    lambda: tok.decode(ids, pixel_dtype=torch.bfloat16),
                ],
                dev,
                repeat=args.repeat,
            )
            p16 = psnr_db(tok.decode(ids, pixel_dtype=torch.bfloat16), tok.decode(ids))
            rows.append(
                [
                    B,
                    f"{agree:.0%}",
                    B / t_tok_o,
                    B / t_tok,
                    t_tok_o / t_tok,
                    B / (t_tok_o + t_dec_o),
                    B / (t_tok + t_dec),
                    (t_tok_o + t_dec_o) / (t_tok + t_dec),
                    B / (t_tok + t_dec16),
                    (t_tok_o + t_dec_o) / (t_tok + t_dec16),
                    p16,
                ]
            )
        print_table(
            f"HAR sampling, guidance on, ours vs official ({args.size}, GPT {args.gen_dtype}, tokenizer fp32)",
            [
                "batch",
                "greedy tokens identical",
                "official tokens img/s",
                "ours tokens img/s",
                "tokens speed-up",
                "official +decode img/s",
                "ours +decode img/s",
                "tokens+decode speed-up",
                "ours +decode, bf16 pixels img/s",
                "speed-up, bf16 pixels",
                "bf16-pixel PSNR vs fp32 (dB)",
            ],
            rows,
        )
    if "train" not in args.skip:
        rows = []
        for kind in ("tokenizer", "generator"):
            res = {}
            for which in ("official", "ours"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--official",
                    str(args.official),
                    "--size",
                    args.size,
                    "--repeat",
                    str(args.repeat),
                    "--device",
                    args.device,
                    "--worker",
                    which,
                    kind,
                    str(args.train_batch),
                ]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                res[which] = json.loads(out)
            o, u = res["official"], res["ours"]
            rows.append(
                [
                    kind,
                    args.train_batch,
                    o["seconds"],
                    u["seconds"],
                    o["seconds"] / u["seconds"],
                    o["peak_mb"],
                    u["peak_mb"],
                ]
            )
        print_table(
            f"Training step, ours vs official ({args.size}, fp32)",
            ["model", "batch", "official s/step", "ours s/step", "speed-up", "official peak MiB", "ours peak MiB"],
            rows,
        )


if __name__ == "__main__":
    main()
