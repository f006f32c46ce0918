"""Full-size parity check data from the *official* ResTok code (run by hand; outputs are not committed).

    /work/venv-off/bin/python tests/parity/run_full_size_official.py --official /work/official \\
        --out /work/parity-work

Builds the released-size models from the official checkout (put on ``sys.path`` at run time with the same
torchvision stub as ``make_official_fixtures.py``; no official code is copied here), fills them with
``seeded_state_dict`` weights, and saves:

* ``full_tokenizer.safetensors``: the ``restok_l_128`` inference-config tokenizer (default pixel CNN, large
  ViTs, 128 tokens, 256 px), weight seed 2026, one image ``torch.rand(1,3,256,256)`` from seed 2027:
  ``images, tokens, decoded_full, decoded_k4, decoded_k16``.
* ``full_generator.safetensors``: GPT-L HAR (dim 1024, 24 layers, 16 heads, vocab 8192, block 128,
  1000 classes, ar_token_num 4, spe_token_num 127), weight seed 2028: teacher-forced ``logits`` for one
  sample (``tokens`` from seed 2029, label 207) and greedy step-schedule generation (cfg 3.75, window 0.25,
  num_steps 9) for labels [207, 360] as ``gen_step``.

Needs several GB of RAM and a minute or two on CPU; run it alone.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

HERE = Path(__file__).resolve().parent

TOKENIZER_SEED, IMAGE_SEED, GENERATOR_SEED, GEN_TOKENS_SEED = 2026, 2027, 2028, 2029
EXPECTED_TOKENIZER_PARAMS, EXPECTED_GENERATOR_PARAMS = 659_693_771, 326_263_808


def load_fixture_maker() -> ModuleType:
    """Import ``make_official_fixtures.py`` (next to this file) by path for its helpers."""
    spec = importlib.util.spec_from_file_location("make_official_fixtures", HERE / "make_official_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write tensors to ``path`` and the metadata to the same name with ``.json``."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path), metadata={"meta": json.dumps(meta)})
    path.chmod(0o644)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")


@torch.no_grad()
def run_tokenizer(mk: ModuleType, official: Path, out: Path) -> dict:
    """Full restok_l_128 tokenizer: encode one image, decode with 128, 4 and 16 tokens."""
    import modeling.restok as restok_module
    from omegaconf import OmegaConf

    timings: dict[str, float] = {}
    cfg = OmegaConf.load(official / "configs/infer/ResTok/llamagen_l_c2i_restok_l_128.yaml")
    cfg.experiment.tokenizer_checkpoint = ""
    t0 = time.time()
    torch.manual_seed(0)
    model = restok_module.ResTok(cfg).float().eval()
    timings["build_s"] = time.time() - t0
    t0 = time.time()
    mk.apply_seeded_weights(model, TOKENIZER_SEED)
    timings["seed_weights_s"] = time.time() - t0
    n_params = mk.num_params(model)
    print(f"tokenizer params: {n_params:,} (expected {EXPECTED_TOKENIZER_PARAMS:,})", flush=True)

    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(IMAGE_SEED))
    t0 = time.time()
    zq, res = model.encode(images)
    timings["encode_s"] = time.time() - t0
    tensors = {"images": images, "tokens": res["min_encoding_indices"].reshape(1, -1).to(torch.int64)}
    for key, k in (("decoded_full", None), ("decoded_k4", 4), ("decoded_k16", 16)):
        t0 = time.time()
        tensors[key] = model.decode(zq, num_latent_tokens=k)[0]
        timings[f"{key}_s"] = time.time() - t0
    meta = {
        "num_params": n_params,
        "weight_seed": TOKENIZER_SEED,
        "image_seed": IMAGE_SEED,
        "config": "configs/infer/ResTok/llamagen_l_c2i_restok_l_128.yaml with experiment.tokenizer_checkpoint=''",
        "timings": timings,
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    save(out / "full_tokenizer.safetensors", tensors, meta)
    print(f"tokenizer timings: { {k: round(v, 1) for k, v in timings.items()} }", flush=True)
    return meta


@torch.no_grad()
def run_generator(mk: ModuleType, out: Path) -> dict:
    """GPT-L HAR: teacher-forced logits for one sample and a greedy step-schedule generation."""
    import autoregressive.models.gpt_har as gpt

    timings: dict[str, float] = {}
    args = gpt.ModelArgs(
        dim=1024,
        n_layer=24,
        n_head=16,
        vocab_size=8192,
        block_size=128,
        num_classes=1000,
        cls_token_num=1,
        model_type="c2i",
        ar_token_num=4,
        spe_token_num=127,
    )
    t0 = time.time()
    torch.manual_seed(0)
    model = gpt.Transformer(args).float().eval()
    timings["build_s"] = time.time() - t0
    t0 = time.time()
    mk.apply_seeded_weights(model, GENERATOR_SEED)
    timings["seed_weights_s"] = time.time() - t0
    n_params = mk.num_params(model)
    print(f"generator params: {n_params:,} (expected {EXPECTED_GENERATOR_PARAMS:,})", flush=True)

    tokens = torch.randint(0, 8192, (1, 128), generator=torch.Generator().manual_seed(GEN_TOKENS_SEED))
    label = torch.tensor([207])
    t0 = time.time()
    logits, _ = model(idx=tokens, cond_idx=label)
    timings["teacher_forced_s"] = time.time() - t0

    gen_labels = torch.tensor([207, 360])
    settings = {
        "num_sample_steps": 128,
        "guidance_scale": 3.75,
        "guidance_decay": "step",
        "cfg_schedule_kwargs": {"num_steps": 9, "window_start": 0.25, "min_cfg_scale": 1.0},
        "top_k": 1,
        "top_p": 1.0,
        "randomize_temperature": 1.0,
    }
    t0 = time.time()
    gen = model.generate(condition=gen_labels, **settings).to(torch.int64)
    timings["generate_s"] = time.time() - t0
    tensors = {"tokens": tokens, "label": label, "logits": logits.float(), "gen_labels": gen_labels, "gen_step": gen}
    meta = {
        "num_params": n_params,
        "weight_seed": GENERATOR_SEED,
        "tokens_seed": GEN_TOKENS_SEED,
        "model_args": {k: getattr(args, k) for k in args.__dataclass_fields__},
        "teacher_forced": "model(idx=tokens (all 128), cond_idx=label) in eval mode; "
        "logits[:, p] predicts tokens[:, p]",
        "generate_kwargs": settings,
        "timings": timings,
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    save(out / "full_generator.safetensors", tensors, meta)
    print(f"generator timings: { {k: round(v, 1) for k, v in timings.items()} }", flush=True)
    return meta


def main() -> None:
    """Run both full-size checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=Path("/work/official"))
    parser.add_argument("--out", type=Path, default=Path("/work/parity-work"))
    ns = parser.parse_args()
    mk = load_fixture_maker()
    mk.install_official_paths(ns.official)
    torch.manual_seed(0)
    ns.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    run_tokenizer(mk, ns.official, ns.out)
    gc.collect()
    run_generator(mk, ns.out)
    print(f"total {time.time() - t0:.1f}s; outputs in {ns.out}")


if __name__ == "__main__":
    main()
