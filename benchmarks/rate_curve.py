"""Rate-quality curve of a tokenizer on held-out images and what per-image budgets save (prints a Markdown table).

    python benchmarks/rate_curve.py [--tokenizer restok-tiny-mnist] [--target-psnr 17 19]

Default data: the 1,000 held-out embedded digits. PSNR/SSIM of the 8-bit reconstruction from every prefix length,
codebook usage of those prefixes, and for each target the distribution of the shortest prefix reaching it.
"""

from __future__ import annotations

import argparse

import torch

from restok import ResTok, encode_adaptive
from restok.data.embedded import MNISTDigits
from restok.eval.metrics import codebook_stats, ssim


def main() -> None:
    """Measure and print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", default="restok-tiny-mnist")
    p.add_argument("--target-psnr", type=float, nargs="+", default=[17.0, 19.0])
    args = p.parse_args()
    tok = ResTok.from_pretrained(args.tokenizer)
    x, _ = MNISTDigits("test", tok.config.image_size).batch(range(1000))
    tables, ssims, ids = [], {k: [] for k in tok.prefix_lengths}, []
    for b in x.split(250):
        res = encode_adaptive(tok, b, psnr=0.0)
        tables.append(res.table)
        ids.append(res.ids)
        for k in tok.prefix_lengths:
            rec = torch.round(tok.decode(res.ids[:, :k]) * 255) / 255
            ssims[k].append(ssim(rec, b))
    table, ids = torch.cat(tables), torch.cat(ids)
    print(f"{args.tokenizer} on {len(x)} held-out digits\n")
    print("| tokens | PSNR (dB) | SSIM | codebook usage |\n|---|---|---|---|")
    for j, k in enumerate(tok.prefix_lengths):
        usage = codebook_stats(ids[:, :k], tok.codebook_size)["usage"]
        print(f"| {k} | {table[:, j].mean():.2f} | {torch.cat(ssims[k]).mean():.3f} | {usage:.1%} |")
    print("\n| target PSNR | images per length (4 / 8 / 16 / 32) | mean tokens | reached |\n|---|---|---|---|")
    lengths = torch.tensor(tok.prefix_lengths)
    for t in args.target_psnr:
        ok = table >= t
        met = ok.any(1)
        chosen = torch.where(met, lengths[ok.float().argmax(1)], lengths[-1])
        counts = " / ".join(str(int((chosen == k).sum())) for k in tok.prefix_lengths)
        print(f"| {t:g} dB | {counts} | {chosen.float().mean():.1f} | {met.float().mean():.1%} |")


if __name__ == "__main__":
    main()
