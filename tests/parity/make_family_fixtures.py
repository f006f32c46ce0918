"""Produce parity fixtures for the tokenizer and generator families ResTok is compared with, by running each
family's *own* repository code on small seeded weights in its own layout.

One family per run (TiTok and One-D-Piece both call their package ``modeling``)::

    python tests/parity/make_family_fixtures.py titok --repo /path/to/bytedance/1d-tokenizer
    python tests/parity/make_family_fixtures.py one-d-piece --repo /path/to/turingmotors/One-D-Piece
    python tests/parity/make_family_fixtures.py llamagen --repo /path/to/FoundationVision/LlamaGen

The repository is only put on ``sys.path`` at run time (with the throw-away torchvision stub of
``make_official_fixtures.py`` for the TiTok-based code); none of its code is copied here. Weights are not stored:
every tensor is drawn by ``seeded_weights.seeded_state_dict`` from the recorded seed and the repository model's own
``{name: shape}``, which the tests regenerate. Each case writes ``<case>.json`` (the release-layout config, seed,
shapes, notes) and ``<case>.safetensors`` (inputs and the repository's outputs) under ``tests/fixtures/families``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_official_fixtures import apply_seeded_weights, install_official_paths, num_params  # noqa: E402

OUT = HERE.parent / "fixtures" / "families"

# The MaskGIT VQGAN decoder the two-stage TiTok releases hard-code (128 wide) is shrunk for the fixtures; the
# re-implementation reads the same shrink from the case's "pixel_cnn" entry.
SMALL_PIXEL_CNN = {"hidden_channels": 32, "channel_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "z_channels": 256}


def titok_release_config(case: dict[str, Any]) -> dict[str, Any]:
    """A release-style config (the layout of TiTok's ``config.json`` / ``configs/infer`` YAML) for one case."""
    vq = {
        "codebook_size": case["codebook_size"],
        "token_size": case["token_size"],
        "use_l2_norm": case["use_l2_norm"],
        "commitment_cost": 0.25,
        "vit_enc_model_size": case["enc"],
        "vit_dec_model_size": case["dec"],
        "vit_enc_patch_size": case["patch"],
        "vit_dec_patch_size": case["patch"],
        "num_latent_tokens": case["num_tokens"],
        "finetune_decoder": case["two_stage"],
    }
    if "is_legacy" in case:
        vq["is_legacy"] = case["is_legacy"]
    cfg: dict[str, Any] = {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": case["crop"]}}}
    if case.get("one_d_piece"):
        vq["strict_length_assertion"] = False
        cfg["model"]["type"] = "one_d_piece"
    return cfg


TITOK_CASES: dict[str, dict[str, Any]] = {
    # the two-stage releases (L-32/B-64/S-128): legacy heads, l2-normed codes, MaskGIT VQGAN pixel decoder
    "titok_two_stage": dict(
        enc="small",
        dec="small",
        patch=16,
        crop=32,
        num_tokens=8,
        codebook_size=64,
        token_size=12,
        use_l2_norm=True,
        two_stage=True,
        batch=3,
        seed=3101,
    ),
    # the single-stage VQ-8k releases (BL-64/BL-128/SL-256): fixed heads, no l2 norm, pixels directly
    "titok_single_stage": dict(
        enc="small",
        dec="small",
        patch=8,
        crop=32,
        num_tokens=12,
        codebook_size=96,
        token_size=16,
        use_l2_norm=False,
        two_stage=False,
        is_legacy=False,
        batch=2,
        seed=3102,
    ),
}
ONE_D_PIECE_CASES: dict[str, dict[str, Any]] = {
    "one_d_piece": dict(
        enc="small",
        dec="small",
        patch=16,
        crop=32,
        num_tokens=16,
        codebook_size=64,
        token_size=12,
        use_l2_norm=True,
        two_stage=True,
        one_d_piece=True,
        batch=3,
        seed=3201,
        lengths=[1, 2, 3, 5, 8, 16],
    ),
}


def shrink_pixel_decoder(titok_module: Any) -> Callable[[], None]:
    """Make ``modeling.titok.Pixel_Decoder`` build the small VQGAN decoder; returns the undo function."""
    from omegaconf import OmegaConf

    original = titok_module.Pixel_Decoder

    def small(config: Any) -> Any:
        c = OmegaConf.to_container(config)
        c.update(SMALL_PIXEL_CNN, num_resolutions=len(SMALL_PIXEL_CNN["channel_mult"]))
        return original(OmegaConf.create(c))

    titok_module.Pixel_Decoder = small
    return lambda: setattr(titok_module, "Pixel_Decoder", original)


@torch.no_grad()
def run_titok_case(name: str, case: dict[str, Any]) -> tuple[dict, dict]:
    """Build the repository's TiTok (or OneDPiece) on seeded weights; record ids and decoded pixels."""
    import modeling.titok as titok_module

    cfg = titok_release_config(case)
    restore = shrink_pixel_decoder(titok_module)
    try:
        torch.manual_seed(0)
        if case.get("one_d_piece"):
            from modeling.one_d_piece import OneDPiece as Model
        else:
            Model = titok_module.TiTok
        model = Model(copy.deepcopy(cfg)).float().eval()
    finally:
        restore()
    shapes = apply_seeded_weights(model, case["seed"])
    b, s = case["batch"], case["crop"]
    images = torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(case["seed"] + 1))
    _, result = model.encode(images)
    ids = result["min_encoding_indices"].reshape(b, case["num_tokens"]).to(torch.int64)
    tensors = {"images": images, "ids": ids, "decoded": model.decode_tokens(ids)}
    for k in case.get("lengths", []):
        tensors[f"decoded_k{k}"] = model.decode_tokens(ids, length=k)
    meta = {
        "family": "one-d-piece" if case.get("one_d_piece") else "titok",
        "release_config": cfg,
        "pixel_cnn": SMALL_PIXEL_CNN if case["two_stage"] else None,
        "weight_seed": case["seed"],
        "state_dict_shapes": shapes,
        "num_params": num_params(model),
        "lengths": case.get("lengths", []),
        "notes": [
            "images = torch.rand(B,3,S,S, generator seeded weight_seed + 1), in [0, 1] as the releases take them",
            "ids = encode(images)[1]['min_encoding_indices'] reshaped (B, L)",
            "decoded = decode_tokens(ids) (unclamped); decoded_k{k} = decode_tokens(ids, length=k)",
        ],
    }
    return meta, tensors


def save_case(name: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor], out: Path) -> None:
    """Write ``<name>.json`` and ``<name>.safetensors``."""
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    size = (out / f"{name}.safetensors").stat().st_size
    print(f"{name}: {len(tensors)} tensors, {size / 1e3:.1f} kB, {meta.get('num_params', 0):,} parameters")


def main() -> None:
    """Run one family's cases."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", choices=["titok", "one-d-piece", "llamagen"])
    ap.add_argument("--repo", type=Path, required=True, help="a checkout of the family's repository")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    install_official_paths(args.repo)
    if args.family == "llamagen":
        import llamagen_cases

        for name, (meta, tensors) in llamagen_cases.run_all().items():
            save_case(name, meta, tensors, args.out)
        return
    for name, case in (TITOK_CASES if args.family == "titok" else ONE_D_PIECE_CASES).items():
        meta, tensors = run_titok_case(name, case)
        save_case(name, meta, tensors, args.out)


if __name__ == "__main__":
    main()
