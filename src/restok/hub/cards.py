"""Model cards: the ``README.md`` a saved model carries for the Hugging Face Hub."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["model_card", "PAPER"]

PAPER = (
    "arXiv 2601.03955 (ResTok: Learning Hierarchical Residuals in 1D Visual Tokenizers for Autoregressive Image "
    "Generation)"
)
_TAGS = {
    "tokenizer": ("image-tokenizer", "image-feature-extraction"),
    "generator": ("image-generation", "unconditional-image-generation"),
}


def _made_section(card: dict[str, Any]) -> list[str]:
    """How the model was trained or made, and what it measured (from its ``card.json``), as Markdown lines."""
    lines: list[str] = []
    if card.get("training"):
        t = card["training"]
        lines += [
            "## How it was trained",
            "",
            f"`restok train {t.get('kind', '')}`, {t.get('steps', '?')} steps (EMA weights); the full training config:",
            "",
            "```json",
            json.dumps(t.get("config", {}), indent=2),
            "```",
            "",
        ]
    if card.get("command") or card.get("figures"):
        lines += ["## How it was made", ""]
        if card.get("command"):
            lines += ["```bash", str(card["command"]), "```", ""]
        lines += [f"- {key}: {card[key]}" for key in ("wall_time_s", "machine", "date", "data") if key in card]
        if card.get("figures"):
            lines += ["", "## What it measured", "", "| figure | value |", "|---|---|"]
            lines += [
                f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in card["figures"].items()
            ]
        lines.append("")
    return lines


def model_card(model: Any) -> str:
    """A Hub model card (``README.md``): metadata for the Hub, what the model is, how to load it, its config, and
    how it was made and what it measured when that is known (the embedded models' cards)."""
    tag, pipeline_tag = _TAGS[model.kind]
    cls = type(model).__name__
    params = sum(p.numel() for p in model.parameters())
    lines = ["---", "library_name: restok", "license: apache-2.0", "tags:"]
    lines += [f"- {t}" for t in ("restok", tag, "arxiv:2601.03955", "pytorch")]
    lines += [f"pipeline_tag: {pipeline_tag}", "---", ""]
    lines += [f"# {model.provenance.source if model.provenance.layout != 'memory' else cls}", ""]
    lines += [
        f"A {cls} ({params:,} parameters), {model.description}, from {PAPER}.",
        "",
        "```python",
        f"from restok import {cls}",
        f'model = {cls}.from_pretrained("<this repo>")',
        "```",
        "",
    ]
    lines += _made_section(model.provenance.card or {})
    lines += ["## Config", "", "```json", json.dumps(model.config.to_dict(), indent=2), "```", ""]
    extra = model.side_files()
    if "generation_config.json" in extra:
        lines += [
            "## Default sampling recipe (`generation_config.json`)",
            "",
            "```json",
            json.dumps(extra["generation_config.json"], indent=2),
            "```",
            "",
        ]
    return "\n".join(lines)
