"""Loading and saving as the Hugging Face ecosystem does, for both models (timm/diffusers/transformers' API).

:class:`PretrainedModel` gives ``from_pretrained`` (this package's format, the official layouts, embedded model
names, local files, Hub ids, with the ``huggingface_hub`` keyword arguments and ``device``/``torch_dtype``),
``save_pretrained`` (with a model card), ``push_to_hub``, ``.device``/``.dtype`` and a provenance record. Each model
class says what it is (``kind``, ``config_class``) and builds itself from its config: loading code deals only in
``(config, state dict)`` (:mod:`restok.checkpoint`), as timm's ``build_model_with_cfg`` does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import torch
import torch.nn as nn

from .checkpoint import (
    CheckpointError,
    Provenance,
    ResolvedCheckpoint,
    check_state_dict,
    push_folder_to_hub,
    read_config_file,
    read_state_dict,
    resolve_checkpoint,
    save_checkpoint,
    state_dict_sha256,
    temporary_folder,
)
from .io import write_json
from .official import checkpoint_kind, config_from_record
from .precision import parse_dtype

__all__ = ["PretrainedModel", "model_card"]

M = TypeVar("M", bound="PretrainedModel")
PAPER = "arXiv 2601.03955 (ResTok: Learning Hierarchical Residuals in 1D Visual Tokenizers for Autoregressive Image Generation)"


class PretrainedModel(nn.Module):
    """Shared loading/saving of :class:`~restok.ResTok` and :class:`~restok.HARGenerator`."""

    kind: ClassVar[str]  # "tokenizer" or "generator"
    config_class: ClassVar[type]
    # Checkpoint keys the model does not have and may ignore (official training-only heads).
    ignored_prefixes: ClassVar[tuple[str, ...]] = ()
    # Submodules kept in float32 when the model is cast to another float dtype (transformers'
    # ``_keep_in_fp32_modules``): the official code runs them in float32 whatever the rest's precision.
    keep_in_fp32_modules: ClassVar[tuple[str, ...]] = ()

    config: Any
    provenance: Provenance

    # -------------------------------------------------------------------------------- dtype and device
    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point dtype of the parameters (those of :attr:`keep_in_fp32_modules` stay float32)."""
        kept = {id(p) for name in self.keep_in_fp32_modules if (m := getattr(self, name, None)) is not None for p in m.parameters()}
        for p in self.parameters():
            if id(p) not in kept and p.is_floating_point():
                return p.dtype
        return torch.float32

    def _apply(self, fn: Any, recurse: bool = True) -> "PretrainedModel":
        self.__dict__.pop("_restok_compiled", None)  # compiled steps and caches (restok.compiled) of the old tensors
        super()._apply(fn, recurse)
        for name in self.keep_in_fp32_modules:
            m = getattr(self, name, None)
            if m is not None and any(p.is_floating_point() and p.dtype != torch.float32 for p in m.parameters()):
                m.float()
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickling and ``copy.deepcopy`` leave out the compiled functions (they are rebuilt on first use)."""
        state = dict(super().__getstate__())
        state.pop("_restok_compiled", None)
        return state

    def fingerprint(self) -> str:
        """SHA-256 of the weights file this model was loaded from, else of its tensors in memory."""
        return self.provenance.weights_sha256() or state_dict_sha256(self.state_dict())

    def identity(self) -> dict[str, Any]:
        """What to record beside an output made with this model: provenance, weights hash and config."""
        return {**self.provenance.to_dict(), "sha256": self.fingerprint(), "config": self.config.to_dict()}

    # -------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls: type[M],
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: Any = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        proxies: dict[str, str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        device: str | torch.device | None = None,
        map_location: str | torch.device | None = None,
        torch_dtype: torch.dtype | str | None = None,
        resume_download: bool | None = None,
    ) -> M:
        """Load from an embedded model name, a local directory or weights file, or a Hugging Face Hub repo id, in this
        package's format or the official layout (training-only keys dropped, any other mismatch named key by key).

        Args:
            pretrained_model_name_or_path: e.g. ``"xushu-me/restok_l_128.r256_in1k"``, ``"runs/tok/final"``,
                ``"ema_model/pytorch_model.bin"`` or ``"restok-tiny-mnist"``.
            config: a config dataclass, a dict in either layout or a JSON/YAML file, instead of the one beside the weights.
            revision, cache_dir, force_download, proxies, token, local_files_only: as ``huggingface_hub.hf_hub_download``.
            device / map_location: where the model goes (default: CPU).
            torch_dtype: cast the weights (e.g. ``torch.bfloat16`` or ``"bf16"``); modules the official code keeps in
                float32 stay float32.
        """
        del resume_download  # accepted for compatibility; huggingface_hub always resumes
        hub = {"revision": revision, "cache_dir": None if cache_dir is None else str(cache_dir), "force_download": force_download,
               "proxies": proxies, "token": token, "local_files_only": local_files_only}
        name = str(pretrained_model_name_or_path)
        found = resolve_checkpoint(name, **hub)
        raw = found.config
        if isinstance(config, (str, os.PathLike)):
            raw, config = read_config_file(config), None
        elif isinstance(config, Mapping):
            raw, config = dict(config), None
        sd = read_state_dict(found.weights)
        kind = checkpoint_kind(raw, sd.keys()) or checkpoint_kind(raw)
        if kind is not None and kind != cls.kind:
            other = "HARGenerator" if kind == "generator" else "ResTok"
            raise CheckpointError(f"{name} is a {kind} checkpoint, not a {cls.kind}; load it with restok.{other}.from_pretrained")
        if config is None:
            config = config_from_record(cls.kind, raw, str(found.weights))
        elif not isinstance(config, cls.config_class):
            raise CheckpointError(f"config must be a {cls.config_class.__name__}, a dict or a config file, got {type(config).__name__}")
        model = cls(config)
        tensors, dropped = check_state_dict(model.state_dict(), sd, cls.ignored_prefixes, str(found.weights), f"{cls.__name__}({config!r})")
        model.load_state_dict(tensors, strict=True)
        layout = "restok" if (raw or {}).get("format") == "restok" else "official"
        card_file = found.side_file("card.json")
        card = json.loads(card_file.read_text()) if card_file is not None else None
        model.provenance = Provenance(name, str(found.weights), revision, layout, tuple(dropped), card)
        model._load_side_files(found, layout)
        dtype = parse_dtype(torch_dtype) if torch_dtype is not None else None
        return model.to(device=device or map_location or "cpu", dtype=dtype).eval()

    def _load_side_files(self, found: ResolvedCheckpoint, layout: str) -> None:
        """Read the optional files beside the weights (the generator's sampling recipe)."""

    def _side_files(self) -> dict[str, Any]:
        """Optional JSON files saved beside the weights."""
        return {}

    # -------------------------------------------------------------------------------- saving
    def save_pretrained(self, save_directory: str | os.PathLike, *, push_to_hub: bool = False, repo_id: str | None = None,
                        **push_kwargs: Any) -> Path:
        """Write this model in this package's format (``config.json``, ``model.safetensors``, side files and a model
        card ``README.md``); with ``push_to_hub`` also upload it to ``repo_id`` (default: the folder's name)."""
        d = save_checkpoint(save_directory, self.kind, self.config.to_dict(), self.state_dict(), self._side_files(), model_card(self))
        if self.provenance.card is not None:
            write_json(d / "card.json", self.provenance.card)
        if push_to_hub:
            self.push_to_hub(repo_id or Path(save_directory).name, **push_kwargs)
        return d

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload restok model", private: bool = False,
                    token: str | None = None, revision: str | None = None, create_pr: bool = False) -> str:
        """Upload this model (this package's format, with its model card) to a Hugging Face Hub repo; returns its URL."""
        with temporary_folder() as d:
            self.save_pretrained(d)
            return push_folder_to_hub(d, repo_id, commit_message=commit_message, private=private, token=token,
                                      revision=revision, create_pr=create_pr)


def model_card(model: PretrainedModel) -> str:
    """A Hub model card (``README.md``): metadata for the Hub, what the model is, how to load it, its config, and
    how it was made and what it measured when that is known (the embedded models' cards)."""
    kind = model.kind
    tags = ["restok", "image-tokenizer" if kind == "tokenizer" else "image-generation", "arxiv:2601.03955", "pytorch"]
    cls = type(model).__name__
    params = sum(p.numel() for p in model.parameters())
    lines = ["---", "library_name: restok", "license: apache-2.0", "tags:"] + [f"- {t}" for t in tags]
    lines += ["pipeline_tag: " + ("image-feature-extraction" if kind == "tokenizer" else "unconditional-image-generation"), "---", ""]
    lines += [f"# {model.provenance.source if model.provenance.layout != 'memory' else cls}", ""]
    what = ("a ResTok 1-D tokenizer: images <-> nested, coarse-to-fine discrete tokens" if kind == "tokenizer"
            else "a hierarchical autoregressive (HAR) class-conditional generator of ResTok tokens")
    lines += [f"A {cls} ({params:,} parameters), {what}, from {PAPER}.", "", "```python",
              f"from restok import {cls}", f"model = {cls}.from_pretrained(\"<this repo>\")", "```", ""]
    card = model.provenance.card or {}
    if card.get("training"):
        t = card["training"]
        lines += ["## How it was trained", "", f"`restok train {t.get('kind', '')}`, {t.get('steps', '?')} steps (EMA weights); "
                  "the full training config:", "", "```json", json.dumps(t.get("config", {}), indent=2), "```", ""]
    if card.get("command") or card.get("figures"):
        lines += ["## How it was made", ""]
        if card.get("command"):
            lines += ["```bash", str(card["command"]), "```", ""]
        for key in ("wall_time_s", "machine", "date", "data"):
            if key in card:
                lines.append(f"- {key}: {card[key]}")
        if card.get("figures"):
            lines += ["", "## What it measured", "", "| figure | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in card["figures"].items()]
        lines.append("")
    lines += ["## Config", "", "```json", json.dumps(model.config.to_dict(), indent=2), "```", ""]
    extra = model._side_files()
    if "generation_config.json" in extra:
        lines += ["## Default sampling recipe (`generation_config.json`)", "", "```json", json.dumps(extra["generation_config.json"], indent=2), "```", ""]
    return "\n".join(lines)
