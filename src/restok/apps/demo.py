"""``restok demo``: what ResTok does, on real data, offline, in about a minute on a laptop CPU.

Loads the embedded models (``restok-tiny-mnist``, ``har-tiny-mnist``) and writes to an output folder:

* ``reconstructions.png``  held-out digits (top row) and their reconstructions from 4, 8, 16, 32 tokens
  (one row per prefix length: the coarse-to-fine strip of Fig. 5),
* ``samples.png``          generated digits, one row per class, from HAR sampling with guidance,
* ``progressive.png``      what each HAR call of a few samples decodes to, coarse to fine,
* ``report.md`` / ``report.html`` with those images, PSNR by token count on the held-out digits and timings.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.embedded import MNISTDigits
from ..data.images import make_grid, save_image
from ..eval.metrics import codebook_stats, psnr
from ..hub.resolve import embedded_model_card
from ..models.auto import load_generator, load_tokenizer
from ..runtime.files import write_json, write_text
from ..runtime.progress import progress as progress_bar

__all__ = ["run_demo"]


def _progressive(
    gen: Any, tok: Any, labels: torch.Tensor, seed: int, cfg_scale: float
) -> tuple[torch.Tensor, list[int]]:
    """Frames (n_samples * k, 3, H, W), sample-major, of the tokens known after each HAR call that completes
    a decodable prefix, and those prefix lengths."""
    frames: list[tuple[int, torch.Tensor]] = []

    def grab(step: int, tokens: torch.Tensor, end: int) -> None:
        if end in tok.prefix_lengths:
            frames.append((end, tokens.clone()))

    gen.generate(labels, cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(seed), callback=grab)
    rows = [tok.decode(t) for _, t in frames]  # each (n, 3, H, W)
    return torch.stack(rows, dim=1).flatten(0, 1), [k for k, _ in frames]


def _reconstructions(tok: Any, out: Path, num_eval: int, timings: dict[str, float]) -> dict[str, Any]:
    """(a) Held-out digits and their reconstructions from every prefix length (``reconstructions.png``, the strip of
    Fig. 5), with PSNR by token count and the codebook's usage on them."""
    test = MNISTDigits("test", tok.config.image_size)
    n = min(num_eval, len(test))
    x, _ = test.batch(torch.linspace(0, len(test) - 1, n).long().tolist())  # (n, 3, S, S)
    t = time.perf_counter()
    ids = torch.cat([tok.encode(b) for b in x.split(250)])  # (n, L)
    timings["encode_s_per_image"] = (time.perf_counter() - t) / n
    strip_cols = torch.linspace(0, n - 1, 10).long()
    strip, psnr_by_k = [x[strip_cols]], {}
    t = time.perf_counter()
    for k in tok.prefix_lengths:
        rec = torch.cat([tok.decode(b[:, :k]) for b in ids.split(250)])  # (n, 3, S, S)
        psnr_by_k[k] = float(psnr(rec, x).mean())
        strip.append(rec[strip_cols])
    timings["decode_s_per_image"] = (time.perf_counter() - t) / (n * len(tok.prefix_lengths))
    save_image(make_grid(torch.cat(strip), nrow=10), out / "reconstructions.png")
    return {"held_out_digits": n, "psnr_db_by_tokens": psnr_by_k, "usage": codebook_stats(ids, tok.codebook_size)}


def _samples(
    gen: Any, tok: Any, out: Path, per_class: int, cfg_scale: float, seed: int, timings: dict[str, float]
) -> list[int]:
    """(b) One row of samples per class (``samples.png``) and (c) the progressive previews of a few samples, one
    column per HAR step that completes a prefix (``progressive.png``); returns those prefix lengths."""
    C = gen.config.num_classes
    labels = torch.arange(C).repeat_interleave(per_class)
    t = time.perf_counter()
    sample_ids = gen.generate(labels, cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(seed))
    timings["generate_s_per_image"] = (time.perf_counter() - t) / len(labels)
    save_image(make_grid(tok.decode(sample_ids), nrow=per_class), out / "samples.png")
    frames, ks = _progressive(gen, tok, torch.arange(min(C, 5)), seed + 1, cfg_scale)
    save_image(make_grid(frames, nrow=len(ks)), out / "progressive.png")
    return ks


@torch.no_grad()
def run_demo(
    out: str | Path = "restok-demo",
    tokenizer: str = "restok-tiny-mnist",
    generator: str = "har-tiny-mnist",
    num_eval: int = 1000,
    per_class: int = 8,
    cfg_scale: float = 2.0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the demo's images and report into ``out``; returns the measured figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bar = progress_bar(None, "restok demo", total=4, enabled=progress, unit="part")
    t0 = time.perf_counter()
    tok, gen = load_tokenizer(tokenizer).eval(), load_generator(generator).eval()
    timings: dict[str, float] = {"load_s": time.perf_counter() - t0}
    bar.update(1)
    rec = _reconstructions(tok, out, num_eval, timings)
    bar.update(1)
    ks = _samples(gen, tok, out, per_class, cfg_scale, seed, timings)
    bar.update(1)
    figures = {
        "tokenizer": tok.provenance.source,
        "generator": gen.provenance.source,
        "held_out_digits": rec["held_out_digits"],
        "psnr_db_by_tokens": rec["psnr_db_by_tokens"],
        "codebook_usage": rec["usage"]["usage"],
        "codebook_entropy_bits": rec["usage"]["entropy"],
        "generator_calls_per_image": gen.num_steps,
        "cfg_scale": cfg_scale,
        "seed": seed,
        "timings": timings,
        "progressive_prefixes": ks,
        "cards": {name: card for name in (tokenizer, generator) if (card := embedded_model_card(name)) is not None},
    }
    timings["total_s"] = time.perf_counter() - t0
    write_json(out / "figures.json", figures)
    _write_reports(out, figures)
    bar.update(1)
    bar.close()
    return figures


def _cards_md(cards: dict[str, Any]) -> str:
    """The embedded models' training record and measured figures, as a Markdown section (empty without cards)."""
    if not cards:
        return ""
    lines = ["## How the embedded models were made and what they measure", ""]
    for name, card in cards.items():
        lines.append(
            f"`{name}`: `{card.get('command', '?')}` ({card.get('wall_time_s', 0) / 60:.0f} min on "
            f"{card.get('machine', '?')})."
        )
        lines.append("")
    lines += ["| model | figure | value |", "|---|---|---|"]
    for name, card in cards.items():
        for key, value in card.get("figures", {}).items():
            lines.append(
                f"| {name} | {key} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {key} | {value} |"
            )
    return "\n".join(lines) + "\n\n"


def _report_md(f: dict[str, Any]) -> str:
    """The report in Markdown: the images with the figures."""
    rows = "\n".join(f"| {k} | {v:.2f} |" for k, v in f["psnr_db_by_tokens"].items())
    t = f["timings"]
    md = f"""# ResTok demo

Embedded models: tokenizer `{f["tokenizer"]}`, generator `{f["generator"]}` (trained by this repository on the
4,000 embedded MNIST training digits; see configs/mnist-*.yaml).

## Coarse to fine (Fig. 5)
Top row: held-out digits. Below: reconstructions from {", ".join(str(k) for k in f["psnr_db_by_tokens"])} tokens.

![reconstructions](reconstructions.png)

PSNR on {f["held_out_digits"]} held-out digits, by number of tokens kept:

| tokens | PSNR (dB) |
|---|---|
{rows}

Codebook usage on these digits: {f["codebook_usage"]:.1%}; entropy {f["codebook_entropy_bits"]:.2f} bits.

## Generated digits (one row per class, HAR: {f["generator_calls_per_image"]} calls per image, guidance
{f["cfg_scale"]})

![samples](samples.png)

## Progressive HAR sampling (columns: after the calls that complete {
        ", ".join(str(k) for k in f["progressive_prefixes"])
    } tokens)

![progressive](progressive.png)

{_cards_md(f.get("cards", {}))}## Timings (this machine)
load {t["load_s"]:.2f} s; encode {1e3 * t["encode_s_per_image"]:.2f} ms/image; decode {
        1e3 * t["decode_s_per_image"]:.2f} ms/image;
generate {1e3 * t["generate_s_per_image"]:.2f} ms/image; total {t["total_s"]:.1f} s.
"""
    return md


def _md_to_html(md: str) -> str:
    """The few Markdown constructs of the report (headings, images, tables, paragraphs) as an HTML page."""
    body = []
    for line in md.splitlines():
        if line.startswith("!["):
            src = line[line.index("(") + 1 : -1]
            body.append(f'<p><img src="{html.escape(src)}" style="image-rendering: pixelated; width: 60%"></p>')
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-"):
                body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    page, in_table = [], False
    for b in body:  # wrap consecutive rows in one table
        if b.startswith("<tr>") != in_table:
            page.append("<table border=1 cellpadding=4>" if not in_table else "</table>")
            in_table = not in_table
        page.append(b)
    if in_table:
        page.append("</table>")
    return "<!doctype html><meta charset=utf-8><title>ResTok demo</title>\n" + "\n".join(page) + "\n"


def _write_reports(out: Path, f: dict[str, Any]) -> None:
    """``report.md`` and ``report.html`` embedding the images with the figures."""
    md = _report_md(f)
    write_text(out / "report.md", md)
    write_text(out / "report.html", _md_to_html(md))


@dataclass(frozen=True, kw_only=True)
class DemoRequest:
    """``restok demo``: the report on two 32-px models (default: the embedded MNIST ones); ``quick`` shortens it to 100
    held-out digits and 4 samples per class."""

    out: Path = Path("restok-demo")
    tokenizer: str = "restok-tiny-mnist"
    generator: str = "har-tiny-mnist"
    num_eval: int = 1000
    per_class: int = 8
    cfg_scale: float = 2.0
    seed: int = 0
    quick: bool = False
    progress: bool = True


def make_demo(req: DemoRequest) -> dict[str, Any]:
    """Write the demo of the request; returns the measured figures."""
    num_eval, per_class = (
        (min(req.num_eval, 100), min(req.per_class, 4)) if req.quick else (req.num_eval, req.per_class)
    )
    return run_demo(
        req.out, req.tokenizer, req.generator, num_eval, per_class, req.cfg_scale, req.seed, progress=req.progress
    )
