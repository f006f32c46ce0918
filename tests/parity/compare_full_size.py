"""Compare the full-size models with outputs that ``run_full_size_official.py`` saved from the official code.

Run by hand (about 2 minutes, ~8 GB RAM):
    python tests/parity/compare_full_size.py --saved /work/parity-work --official-config CONFIG.json
``CONFIG.json`` is the official inference config as JSON (the tokenizer's ``config.json`` layout).
Weights are regenerated from the seeds recorded beside the saved outputs and loaded through the
official-layout loader.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from seeded_weights import seeded_state_dict  # noqa: E402  (run as a script from this folder's parent)

from restok import HARGenerator, ResTok
from restok.models.har.official import generator_config_from_official
from restok.models.restok.config import ResTokConfig
from restok.models.restok.official import tokenizer_config_from_official


def _shapes(model_cls: type, cfg: object) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of a model built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        m = model_cls(cfg)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def main() -> None:
    """Load both full-size models through the official layout and print max differences."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--saved", type=Path, required=True)
    ap.add_argument("--official-config", type=Path, required=True)
    args = ap.parse_args()

    off_cfg = json.loads(args.official_config.read_text())
    meta = json.loads((args.saved / "full_tokenizer.json").read_text())
    ref = load_file(str(args.saved / "full_tokenizer.safetensors"))
    cfg: ResTokConfig = tokenizer_config_from_official(off_cfg)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        save_file(seeded_state_dict(_shapes(ResTok, cfg), meta["weight_seed"]), f"{d}/model.safetensors")
        Path(d, "config.json").write_text(json.dumps(off_cfg))
        tok = ResTok.from_pretrained(d)
        print(f"tokenizer params {sum(p.numel() for p in tok.parameters()):,} (loaded in {time.time() - t0:.1f}s)")
    t0 = time.time()
    ids = tok.encode(ref["images"])
    print(f"encode {time.time() - t0:.1f}s; tokens identical: {torch.equal(ids, ref['tokens'])}")
    for name, k in (("decoded_full", 128), ("decoded_k4", 4), ("decoded_k16", 16)):
        t0 = time.time()
        out = tok.decode(ref["tokens"][:, :k])
        diff = (out - ref[name].clamp(0, 1)).abs().max().item()
        print(f"decode k={k}: {time.time() - t0:.1f}s, max |ours - official| = {diff:.2e}")
    del tok

    gmeta = json.loads((args.saved / "full_generator.json").read_text())
    gref = load_file(str(args.saved / "full_generator.safetensors"))
    gcfg = generator_config_from_official(gmeta["model_args"])
    with tempfile.TemporaryDirectory() as d:
        save_file(seeded_state_dict(_shapes(HARGenerator, gcfg), gmeta["weight_seed"]), f"{d}/model.safetensors")
        Path(d, "config.json").write_text(json.dumps(gmeta["model_args"]))
        gen = HARGenerator.from_pretrained(d)
    print(f"generator params {sum(p.numel() for p in gen.parameters()):,}")
    with torch.no_grad():
        logits = gen(gref["tokens"], gref["label"])
    print(f"teacher-forced logits max |diff| = {(logits - gref['logits']).abs().max().item():.2e}")
    kw = gmeta["generate_kwargs"]
    t0 = time.time()
    out = gen.generate(
        gref["gen_labels"],
        cfg_scale=kw["guidance_scale"],
        cfg_schedule="step",
        cfg_start=kw["cfg_schedule_kwargs"]["window_start"],
        top_k=1,
    )
    print(
        f"greedy step-schedule generation {time.time() - t0:.1f}s; tokens identical: "
        f"{torch.equal(out, gref['gen_step'])}"
    )


if __name__ == "__main__":
    main()
