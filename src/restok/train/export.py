"""Inference models from training checkpoints: ``final/`` at the end of a run, and any kept checkpoint on demand
(``restok export RUN --step N``; the released generator was trained on codes of the tokenizer's 750k-step EMA)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file

from ..checkpoint import FORMAT_VERSION, Provenance
from ..config import HARConfig, ResTokConfig, config_from_dict
from .engine import CheckpointDir, TrainingError

__all__ = ["inference_model_config", "inference_model", "export_checkpoint"]


def inference_model_config(kind: str, config: ResTokConfig | HARConfig) -> dict[str, object]:
    """The ``config.json`` record (this package's format) of an inference model of ``kind``."""
    return {"format": "restok", "format_version": FORMAT_VERSION, "kind": kind, "config": config.to_dict()}


def inference_model(record: dict[str, object], weights: dict[str, torch.Tensor]) -> nn.Module:
    """The model ``record`` describes, holding ``weights`` (EMA shadows may carry extra training-only heads)."""
    from ..generator import HARGenerator
    from ..tokenizer import ResTok

    kind = record.get("kind")
    if kind not in ("tokenizer", "generator"):
        raise TrainingError(f"unknown model kind {kind!r} in an inference config")
    cls, cfg_cls = (ResTok, ResTokConfig) if kind == "tokenizer" else (HARGenerator, HARConfig)
    model = cls(config_from_dict(cfg_cls, record["config"]))  # type: ignore[arg-type]
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    if missing:
        raise TrainingError(f"the weights miss {len(missing)} tensors of the {kind}, e.g. {missing[:5]}")
    model.load_state_dict({k: weights[k].to(own[k].dtype) for k in own}, strict=True)
    return model.eval()


def export_checkpoint(run: str | Path, step: int | None = None, out: str | Path | None = None, weights: str = "ema") -> Path:
    """Write the EMA (or raw ``model``) weights of checkpoint ``step`` (default: the newest) of a run folder as an
    inference model in this package's format, loadable with ``from_pretrained``; returns the folder."""
    if weights not in ("ema", "model"):
        raise TrainingError(f"weights must be 'ema' or 'model', got {weights!r}")
    run = Path(run)
    ckpts = CheckpointDir(run, keep=1)
    if step is None:
        newest = ckpts.newest()
        if newest is None:
            raise TrainingError(f"{run} holds no complete checkpoint (looked in {ckpts.root})")
        step, folder = newest
    else:
        folder = ckpts.find(step)
    record_file = folder / "inference_config.json"
    if not record_file.is_file():
        raise TrainingError(f"{folder} has no inference_config.json (written by an older restok); it cannot be exported")
    model = inference_model(json.loads(record_file.read_text()), load_file(str(folder / f"{weights}.safetensors")))
    model.provenance = Provenance(source=f"{weights} weights of {folder}", layout="trained")
    dest = Path(out) if out is not None else run / f"export-step-{step:08d}"
    model.save_pretrained(dest)
    return dest
