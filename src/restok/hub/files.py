"""Checkpoint files: ``(config, state dict)`` in and out, in this package's format or a foreign one.

Reads weights (``.safetensors``, or ``.bin``/``.pt`` with ``torch.load(weights_only=True)``: nothing is ever unpickled
otherwise) and configs (JSON, or YAML with OmegaConf ``${a.b}`` references resolved), and writes this package's
format: a folder with ``config.json`` (``{"format": "restok", "format_version": 1, "kind": ..., "config": {...}}``, plus
``"family"`` for families other than the kind's first), ``model.safetensors``, side files such as
``generation_config.json`` and a model card ``README.md``. It never builds a model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..runtime.files import atomic_write, write_json, write_text
from ..runtime.inputs import MAX_YAML_NODES, load_yaml, read_text_input, regular_file
from ..runtime.requests import RequestError

__all__ = [
    "FORMAT_VERSION",
    "WEIGHT_FILES",
    "CheckpointError",
    "read_state_dict",
    "read_state_dict_keys",
    "read_config_file",
    "read_json",
    "save_checkpoint",
]

FORMAT_VERSION = 1
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointError(RequestError):
    """A checkpoint that cannot be read or does not match the model."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.bin``/``.pt``/``.pth`` file read with ``weights_only=True``.

    Strips ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes. A pickle that needs anything but
    tensors and plain containers is refused.
    """
    path = Path(path)
    try:
        regular_file(path, "checkpoint file")
    except (OSError, ValueError) as e:
        raise CheckpointError(str(e).replace("no such file", "not found")) from None
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
    return {_plain_key(k): v for k, v in sd.items()}


def _plain_key(key: str) -> str:
    """A tensor name without ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes."""
    key = key.replace("_orig_mod.", "")
    return key[len("module.") :] if key.startswith("module.") else key


def read_state_dict_keys(path: str | os.PathLike) -> set[str]:
    """The tensor names of a weights file (prefixes stripped as :func:`read_state_dict` does), reading as little as the
    format allows: a safetensors header, or a memory-mapped ``.bin``."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {_plain_key(k) for k in f.keys()}
        except Exception:  # noqa: BLE001 - unreadable: read_state_dict names the problem
            pass
    return set(read_state_dict(path))


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON or YAML (needs PyYAML) config file as a dict; official ``${a.b}`` interpolations are resolved."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        if importlib.util.find_spec("yaml") is None:
            raise CheckpointError(f"reading {path} needs PyYAML (`pip install pyyaml`), or pass a JSON config")
        try:
            data = load_yaml(read_text_input(path, "config"), f"config {path}")
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read config {path}: {e}") from None
    else:
        data = read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"config {path} is not a mapping")
    try:
        return _resolve_interpolations(data, data)
    except CheckpointError as e:
        raise CheckpointError(f"config {path}: {e}") from None
    except RecursionError:
        raise CheckpointError(f"config {path} is nested too deeply") from None


_INTERP = re.compile(r"^\$\{([\w.]+)\}$")


def _resolve_interpolations(
    node: Any, root: Mapping[str, Any], budget: list[int] | None = None, chain: tuple[str, ...] = ()
) -> Any:
    """Replace whole-string OmegaConf references ``${a.b.c}`` by the value they point to, counting every value the
    result holds against :data:`restok.runtime.inputs.MAX_YAML_NODES` (references that fan out would expand a small
    file to billions of values) and refusing a reference that leads back to itself."""
    budget = [MAX_YAML_NODES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise CheckpointError(
            f"the config's ${{...}} references expand to more than {MAX_YAML_NODES:,} values; a config is far smaller"
        )
    if isinstance(node, Mapping):
        return {k: _resolve_interpolations(v, root, budget, chain) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_interpolations(v, root, budget, chain) for v in node]
    if isinstance(node, str) and (m := _INTERP.match(node)):
        ref = m.group(1)
        if ref in chain:
            raise CheckpointError(f"the config's reference ${{{ref}}} refers to itself (through {' -> '.join(chain)})")
        cur: Any = root
        for part in ref.split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                return node
            cur = cur[part]
        return _resolve_interpolations(cur, root, budget, (*chain, ref))
    return node


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON file, naming it on failure."""
    try:
        data = json.loads(read_text_input(path, "config"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read config {path}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"config {path} is not a JSON object")
    return data


def save_checkpoint(
    directory: str | os.PathLike,
    kind: str,
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    extra_json: Mapping[str, Any] | None = None,
    card: str | None = None,
    family: str | None = None,
) -> Path:
    """Write ``config.json`` (naming ``family`` when given), ``model.safetensors``, each ``extra_json`` file and the
    model card ``README.md`` atomically. Identical tensors give byte-identical files."""
    from safetensors.torch import save_file

    d = Path(directory)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    # one metadata key: safetensors serialises the metadata map in a per-process order, so more keys would make the
    # bytes (and the SHA-256 that manifests record) differ between runs
    atomic_write(d / "model.safetensors", lambda p: save_file(sd, p, metadata={"format": "pt"}))
    record = {
        "format": "restok",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        **({"family": family} if family else {}),
    }
    write_json(d / "config.json", {**record, "config": dict(config)})
    for name, data in (extra_json or {}).items():
        write_json(d / name, data)
    if card is not None:
        write_text(d / "README.md", card)
    return d
