"""Where a checkpoint is: an embedded model's name, a local folder or weights file, or a Hugging Face Hub repo id,
turned into its config dict, its weights file and the way to its side files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.network import settle_offline
from .files import WEIGHT_FILES, CheckpointError, read_config_file, read_json

__all__ = [
    "EMBEDDED_MODELS",
    "ResolvedCheckpoint",
    "resolve_checkpoint",
    "embedded_model_dir",
    "embedded_model_card",
    "hub_download",
]

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# The small MNIST models that configs/mnist-*.yaml train, shipped in assets/<name>/ (config, weights and card.json:
# how they were trained and what they measure).
EMBEDDED_MODELS = ("restok-tiny-mnist", "har-tiny-mnist")


def embedded_model_dir(name: str) -> Path:
    """Folder of an embedded model inside the installed package."""
    from importlib import resources

    return Path(str(resources.files("restok").joinpath("assets", name)))


def embedded_model_card(name: str) -> dict[str, Any] | None:
    """The ``card.json`` of an embedded model (training command, wall time, measured figures), if it has one."""
    if name not in EMBEDDED_MODELS:
        return None
    card = embedded_model_dir(name) / "card.json"
    return read_json(card) if card.is_file() else None


@dataclass
class ResolvedCheckpoint:
    """A checkpoint found on disk or the Hub: its config (a dict, or None), weights file, and how to fetch the
    optional files beside it (``generation_config.json``, ``card.json``)."""

    config: dict[str, Any] | None
    weights: Path
    folder: Path | None = None  # local folder holding the side files
    repo_id: str | None = None  # or the Hub repo they come from
    hub: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None  # where the config was read (named in errors about its values)

    def side_file(self, name: str) -> Path | None:
        """The optional file ``name`` beside the weights, or None when there is none."""
        if self.folder is not None:
            p = self.folder / name
            return p if p.is_file() else None
        if self.repo_id is None:
            return None
        try:
            return Path(hub_download(self.repo_id, name, self.hub))
        except Exception:  # noqa: BLE001 - an optional file: absent, or not cached offline
            return None


def hub_download(repo_id: str, filename: str, hub: Mapping[str, Any]) -> str:
    """Download one file of a Hub repo (cached); offline (:func:`restok.runtime.network.offline`) or with
    ``local_files_only`` only the cache is read, and no request is made."""
    kwargs = {k: v for k, v in hub.items() if v is not None}
    if settle_offline():  # RESTOK_OFFLINE alone must keep the Hub client off the network (it only knows HF_HUB_OFFLINE)
        kwargs["local_files_only"] = True
        kwargs.pop("force_download", None)
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, **kwargs)


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
                    cfg_file = d / cfg_name
                    return ResolvedCheckpoint(read_config_file(cfg_file), p, folder=p.parent, config_file=str(cfg_file))
        return ResolvedCheckpoint(None, p, folder=p.parent)
    if p.is_dir():
        cfg_path = p / "config.json"
        for weights in WEIGHT_FILES:
            if (p / weights).is_file():
                if not cfg_path.is_file():
                    return ResolvedCheckpoint(None, p / weights, folder=p)
                return ResolvedCheckpoint(read_json(cfg_path), p / weights, folder=p, config_file=str(cfg_path))
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
        cfg_file = hub_download(repo_id, "config.json", hub)
        cfg = read_json(Path(cfg_file))
        last: Exception | None = None
        for name in WEIGHT_FILES:
            try:
                weights = Path(hub_download(repo_id, name, hub))
                return ResolvedCheckpoint(cfg, weights, repo_id=repo_id, hub=hub, config_file=f"{repo_id}/config.json")
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
        raise CheckpointError(
            f"could not load {repo_id!r} from the Hugging Face Hub: {type(e).__name__}: {e}"
        ) from None
