"""Checkpoint files: ``(config, state dict)`` in and out, in this package's format or the official layouts.

A leaf module: it reads and writes configs as dicts and weights as tensors, finds them on disk, in the package (the
embedded models) or on the Hugging Face Hub, and reports key mismatches; it never builds a model. The model classes
build themselves from what it returns (:mod:`restok.pretrained`); the official configs are mapped in
:mod:`restok.official`.

Our format is a directory with ``config.json`` (``{"format": "restok", "format_version": 1, "kind": ..., "config":
{...}}``), ``model.safetensors`` and, for generators, ``generation_config.json`` (the sampling recipe), plus a model
card ``README.md``. The official layout is the nested OmegaConf ``config.json`` (tokenizer) or the flat ``ModelArgs``
one (generator) beside ``model.safetensors`` or ``pytorch_model.bin``. Nothing here unpickles arbitrary objects:
``.bin``/``.pt`` files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .io import atomic_write, write_json, write_text

__all__ = [
    "FORMAT_VERSION",
    "WEIGHT_FILES",
    "CheckpointError",
    "Provenance",
    "ResolvedCheckpoint",
    "read_state_dict",
    "resolve_checkpoint",
    "read_config_file",
    "check_state_dict",
    "save_checkpoint",
    "push_folder_to_hub",
    "file_sha256",
    "state_dict_sha256",
    "EMBEDDED_MODELS",
    "embedded_model_dir",
    "embedded_model_card",
]

FORMAT_VERSION = 1
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# The small MNIST models that configs/mnist-*.yaml train, shipped in assets/<name>/ (config, weights and card.json:
# how they were trained and what they measure).
EMBEDDED_MODELS = ("restok-tiny-mnist", "har-tiny-mnist")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the model."""


# ----------------------------------------------------------------------------------------------------
# Provenance: where a model's weights came from, saved with every output made with it


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 over the names, dtypes, shapes and bytes of a state dict (a fingerprint of weights in memory)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class Provenance:
    """Where a model came from: ``source`` (the name it was loaded by, or how it was made), the weights file, the
    Hub revision, the layout (``restok``, ``official``, ``memory``), the training-only keys dropped on load and the
    card of measured figures that came with it (``card.json``), if any."""

    source: str = "in memory"
    weights: str | None = None
    revision: str | None = None
    layout: str = "memory"
    dropped_keys: tuple[str, ...] = ()
    card: dict[str, Any] | None = None
    _sha256: str | None = field(default=None, repr=False, compare=False)

    def weights_sha256(self) -> str | None:
        """SHA-256 of the weights file (computed once), or None for a model that did not come from a file."""
        if self._sha256 is None and self.weights and Path(self.weights).is_file():
            self._sha256 = file_sha256(self.weights)
        return self._sha256

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (without the card)."""
        return {"source": self.source, "weights": self.weights, "revision": self.revision, "layout": self.layout,
                "dropped_keys": len(self.dropped_keys)}


# ----------------------------------------------------------------------------------------------------
# Files


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.bin``/``.pt``/``.pth`` file read with ``weights_only=True``.

    Strips ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes. A pickle that needs anything but
    tensors and plain containers is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - SafetensorError on truncated or foreign files
            raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError/RuntimeError variously
            raise CheckpointError(
                f"refusing to load {path}: it is not a plain tensor checkpoint readable with "
                f"weights_only=True ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                "Convert it to safetensors in a trusted environment."
            ) from None
        for key in ("state_dict", "model", "module"):
            if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
                sd = sd[key]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} does not hold a flat mapping of names to tensors")
    out = {}
    for k, v in sd.items():
        k = k.replace("_orig_mod.", "")
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def embedded_model_dir(name: str) -> Path:
    """Folder of an embedded model inside the installed package."""
    from importlib import resources

    return Path(str(resources.files("restok").joinpath("assets", name)))


def embedded_model_card(name: str) -> dict[str, Any] | None:
    """The ``card.json`` of an embedded model (training command, wall time, measured figures), if it has one."""
    if name not in EMBEDDED_MODELS:
        return None
    card = embedded_model_dir(name) / "card.json"
    return json.loads(card.read_text()) if card.is_file() else None


@dataclass
class ResolvedCheckpoint:
    """A checkpoint found on disk or the Hub: its config (a dict, or None), weights file, and how to fetch the
    optional files beside it (``generation_config.json``, ``card.json``)."""

    config: dict[str, Any] | None
    weights: Path
    folder: Path | None = None  # local folder holding the side files
    repo_id: str | None = None  # or the Hub repo they come from
    hub: dict[str, Any] = field(default_factory=dict)

    def side_file(self, name: str) -> Path | None:
        """The optional file ``name`` beside the weights, or None when there is none."""
        if self.folder is not None:
            p = self.folder / name
            return p if p.is_file() else None
        if self.repo_id is None:
            return None
        try:
            return Path(_hub_download(self.repo_id, name, self.hub))
        except Exception:  # noqa: BLE001 - an optional file: absent, or not cached offline
            return None


def _hub_download(repo_id: str, filename: str, hub: Mapping[str, Any]) -> str:
    """Download one file of a Hub repo (cached; respects HF_HUB_OFFLINE and ``local_files_only``)."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, **{k: v for k, v in hub.items() if v is not None})


def resolve_checkpoint(path_or_hub_id: str, **hub: Any) -> ResolvedCheckpoint:
    """Find the config and weights of an embedded model name, a directory, a weights file or a Hub repo id.

    ``hub``: ``revision``, ``cache_dir``, ``force_download``, ``token``, ``local_files_only``, ``proxies`` (passed
    to ``huggingface_hub.hf_hub_download`` for Hub ids).
    """
    name = str(path_or_hub_id)
    if name in EMBEDDED_MODELS and not Path(name).exists():
        d = embedded_model_dir(name)
        if not d.is_dir():
            raise CheckpointError(
                f"the embedded model {name!r} is missing from this installation ({d}); reinstall restok, "
                "or pass a local directory, file or Hub id instead"
            )
        name = str(d)
    p = Path(name).expanduser()
    if p.is_file():
        # a raw training checkpoint (e.g. checkpoint-N/ema_model/pytorch_model.bin) keeps its config higher up
        for d in (p.parent, p.parent.parent, p.parent.parent.parent):
            for cfg_name in ("config.json", "config.yaml"):
                if (d / cfg_name).is_file():
                    return ResolvedCheckpoint(read_config_file(d / cfg_name), p, folder=p.parent)
        return ResolvedCheckpoint(None, p, folder=p.parent)
    if p.is_dir():
        cfg_path = p / "config.json"
        for weights in WEIGHT_FILES:
            if (p / weights).is_file():
                return ResolvedCheckpoint(_read_json(cfg_path) if cfg_path.is_file() else None, p / weights, folder=p)
        raise CheckpointError(f"no {' or '.join(WEIGHT_FILES)} in directory {p}")
    if not _HUB_ID.fullmatch(name):
        raise CheckpointError(f"checkpoint path does not exist: {name}")
    return _resolve_hub(name, hub)


def _resolve_hub(repo_id: str, hub: dict[str, Any]) -> ResolvedCheckpoint:
    """Config and weights of a Hub repo, with an actionable message when offline and not cached."""
    try:
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError:  # older huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError  # type: ignore
    try:
        cfg = _read_json(Path(_hub_download(repo_id, "config.json", hub)))
        last: Exception | None = None
        for name in WEIGHT_FILES:
            try:
                return ResolvedCheckpoint(cfg, Path(_hub_download(repo_id, name, hub)), repo_id=repo_id, hub=hub)
            except EntryNotFoundError as e:
                last = e
        raise CheckpointError(f"Hub repo {repo_id} has none of {WEIGHT_FILES}") from last
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{repo_id!r} is not a local path and is not in the Hugging Face cache, and the Hub cannot be "
            "reached (offline, or local_files_only). Download it once with network access "
            f"(`hf download {repo_id}`) or pass a local directory or file."
        ) from None
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - repository not found, auth, HTTP errors
        raise CheckpointError(f"could not load {repo_id!r} from the Hugging Face Hub: {type(e).__name__}: {e}") from None


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON or YAML (needs PyYAML) config file as a dict; official ``${a.b}`` interpolations are resolved."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise CheckpointError(f"reading {path} needs PyYAML (`pip install pyyaml`), or pass a JSON config") from None
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise CheckpointError(f"cannot read config {path}: {e}") from None
    else:
        data = _read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"config {path} is not a mapping")
    return _resolve_interpolations(data, data)


_INTERP = re.compile(r"^\$\{([\w.]+)\}$")


def _resolve_interpolations(node: Any, root: Mapping[str, Any]) -> Any:
    """Replace whole-string OmegaConf references ``${a.b.c}`` by the value they point to."""
    if isinstance(node, Mapping):
        return {k: _resolve_interpolations(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_interpolations(v, root) for v in node]
    if isinstance(node, str) and (m := _INTERP.match(node)):
        cur: Any = root
        for part in m.group(1).split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                return node
            cur = cur[part]
        return _resolve_interpolations(cur, root)
    return node


def _read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON file, naming it on failure."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read config {path}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"config {path} is not a JSON object")
    return data


# ----------------------------------------------------------------------------------------------------
# Checking


def check_state_dict(
    own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], ignore_prefixes: tuple[str, ...], source: str, what: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Match a checkpoint to a model's own state dict: keys under ``ignore_prefixes`` that the model lacks are
    dropped; any missing, unexpected or mis-shaped key is an error naming them all. Returns the tensors, cast to the
    model's dtypes, and the dropped names."""
    dropped = [k for k in state_dict if k.startswith(ignore_prefixes) and k not in own]
    sd = {k: v for k, v in state_dict.items() if k not in dropped}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        lines = [f"checkpoint {source} does not match {what}"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                lines.append(f"  {title}: {shown}")
        raise CheckpointError("\n".join(lines))
    bad = [k for k, v in sd.items() if own[k].is_floating_point() and not (v.is_floating_point() or v.is_complex())]
    if bad:
        raise CheckpointError(f"checkpoint {source}: {len(bad)} tensor(s) are not floating point where the model's are, e.g. "
                              f"{bad[0]} ({sd[bad[0]].dtype})")
    nonfinite = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointError(f"checkpoint {source}: {len(nonfinite)} tensor(s) hold NaN or Inf, e.g. {nonfinite[0]}")
    return {k: v.to(own[k].dtype) for k, v in sd.items()}, dropped


# ----------------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(
    directory: str | os.PathLike,
    kind: str,
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    extra_json: Mapping[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors``, each ``extra_json`` file and the model card ``README.md``
    atomically. Identical tensors give byte-identical files."""
    from safetensors.torch import save_file

    d = Path(directory)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    # one metadata key: safetensors serialises the metadata map in a per-process order, so more keys would make the
    # bytes (and the SHA-256 that manifests record) differ between runs
    atomic_write(d / "model.safetensors", lambda p: save_file(sd, p, metadata={"format": "pt"}))
    write_json(d / "config.json", {"format": "restok", "format_version": FORMAT_VERSION, "kind": kind, "config": dict(config)})
    for name, data in (extra_json or {}).items():
        write_json(d / name, data)
    if card is not None:
        write_text(d / "README.md", card)
    return d


def push_folder_to_hub(
    folder: str | os.PathLike, repo_id: str, *, commit_message: str, private: bool = False, token: str | None = None,
    revision: str | None = None, create_pr: bool = False,
) -> str:
    """Create (if needed) the Hub repo ``repo_id`` and upload ``folder`` to it; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    kwargs: dict[str, Any] = {"commit_message": commit_message}
    if revision is not None:
        kwargs["revision"] = revision
    if create_pr:
        kwargs["create_pr"] = True
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), **kwargs)
    return str(url)


def temporary_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for an upload."""
    return tempfile.TemporaryDirectory(prefix="restok-upload-")
