"""Inference models from training checkpoints: ``final/`` at the end of a run, and any kept checkpoint on demand
(``restok export RUN --step N``; the released generator was trained on codes of the tokenizer's 750k-step EMA)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .. import models as _registered_families  # noqa: F401 - every family in the registry
from ..core.registry import identify_checkpoint
from ..hub.files import FORMAT_VERSION, read_json
from ..hub.keys import check_state_dict
from ..hub.provenance import Provenance
from ..runtime.files import make_dir
from .checkpoints import CheckpointDir
from .errors import TrainingError

__all__ = ["inference_model_config", "inference_model", "export_checkpoint", "ExportRequest", "run_export"]


def inference_model_config(model: Any, config: Any) -> dict[str, Any]:
    """The ``config.json`` record (this package's format) of an inference model of ``model``'s family with
    ``config``."""
    return {
        "format": "restok",
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "family": model.family,
        "config": config.to_dict(),
    }


def inference_model(record: dict[str, Any], weights: dict[str, torch.Tensor]) -> Any:
    """The model ``record`` describes, holding ``weights`` (EMA shadows may carry extra training-only heads, which the
    family's key filters drop; anything else missing or extra is an error naming the keys)."""
    found = identify_checkpoint(record)
    if found is None:
        raise TrainingError(
            f"unknown model kind or family ({record.get('kind')!r}, {record.get('family')!r}) in an inference config"
        )
    cls = found[0]
    model = cls(cls.read_config(record, None, "inference_config.json"))
    tensors, _ = check_state_dict(
        model.state_dict(), weights, cls.ignored_prefixes, "the EMA weights", f"the {cls.kind}"
    )
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def export_checkpoint(
    run: str | Path, step: int | None = None, out: str | Path | None = None, weights: str = "ema"
) -> Path:
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
        raise TrainingError(
            f"{folder} has no inference_config.json (written by an older restok); it cannot be exported"
        )
    model = inference_model(read_json(record_file), load_file(str(folder / f"{weights}.safetensors")))
    model.provenance = Provenance(source=f"{weights} weights of {folder}", layout="trained")
    dest = Path(out) if out is not None else make_dir(run / f"export-step-{step:08d}", inside=run)
    model.save_pretrained(dest)
    return dest


@dataclass(frozen=True, kw_only=True)
class ExportRequest:
    """``restok export``: a kept checkpoint of a run folder (default: the newest) as an inference model."""

    run: Path
    step: int | None = None
    out: Path | None = None
    weights: str = "ema"


def run_export(req: ExportRequest) -> Path:
    """Write the request's checkpoint as an inference model; returns its folder."""
    return export_checkpoint(req.run, req.step, req.out, req.weights)
