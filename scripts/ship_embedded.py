"""Copy the replication's trained MNIST models into the package as the embedded defaults, with their cards.

    python benchmarks/replication/replicate.py all --runs RUNS --inception-weights F   # trains and measures
    python scripts/ship_embedded.py --runs RUNS --machine "2-core x86_64 CPU"

``tok-restok/final`` becomes ``src/restok/assets/restok-tiny-mnist`` and ``har-restok/final`` becomes
``har-tiny-mnist``; each gets a ``card.json`` with its training command, wall time and the figures the replication
measured (``RUNS/eval``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "restok" / "assets"
SHIPPED = {"restok-tiny-mnist": "tok-restok", "har-tiny-mnist": "har-restok"}
DEMO_CFG = 2.0  # replicate.py embedded measures the generator at this guidance scale


def main() -> None:
    """Copy the weights and write the cards."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--machine", required=True, help="where the models were trained, for the card")
    ap.add_argument("--assets", type=Path, default=ASSETS, help="destination (default: the package's assets folder)")
    args = ap.parse_args()
    times = json.loads((args.runs / "times.json").read_text())
    ev = args.runs / "eval"
    rec = json.loads((ev / "rec-tok-restok.json").read_text())
    gen = json.loads((ev / "gen-har-restok-cfg2.json").read_text())
    per = json.loads((ev / "embedded-prefix.json").read_text())  # replicate.py embedded: PSNR, classifier by prefix
    figures = {
        "restok-tiny-mnist": {
            "held-out PSNR (dB, 32 tokens)": rec["psnr"],
            "held-out rFID (1,000 digits)": rec["rfid"],
            "codebook usage": rec["codebook_usage"],
            "codebook entropy (bits)": rec["codebook_entropy"],
            **{f"held-out PSNR (dB, {k} tokens)": v["psnr"] for k, v in per.items()},
            **{
                f"reconstructions classified as the original digit ({k} tokens)": v["classifier_accuracy"]
                for k, v in per.items()
            },
        },
        "har-tiny-mnist": {
            "gFID (1,000 samples, CFG 2.0)": gen["gfid"],
            "class accuracy (digit classifier)": gen["class_accuracy"],
            "precision": gen["precision"],
            "recall": gen["recall"],
            "calls per image": gen["num_calls"],
        },
    }
    for name, run in SHIPPED.items():
        dest = args.assets / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(args.runs / run / "final", dest)
        (dest / "README.md").unlink(missing_ok=True)  # the run's model card; the package's card is card.json
        if name == "har-tiny-mnist":  # the recipe its figures (and the demo) use: guidance 2.0
            (dest / "generation_config.json").write_text(
                json.dumps(
                    {**json.loads((dest / "generation_config.json").read_text()), "cfg_scale": DEMO_CFG}, indent=2
                )
            )
        card = {
            "name": name,
            "command": times[run]["command"],
            "wall_time_s": times[run]["seconds"],
            "date": times[run]["date"],
            "machine": args.machine,
            "data": "embedded:mnist-train (4,000 MNIST digits, CC BY-SA 3.0)",
            "figures": figures[name],
            "details": "benchmarks/replication/RESULTS.md",
        }
        if name == "har-tiny-mnist":
            card["codes_command"] = times["codes-restok"]["command"]
        (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        size = sum(f.stat().st_size for f in dest.iterdir())
        print(f"{name}: {dest} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
