"""Load the official-code parity fixtures written by ``make_official_fixtures.py``.

To stay within the size budget, tensors that are bitwise copies of other stored tensors are left out of
the ``.safetensors`` file and described under ``"tensor_aliases"`` in the JSON; ``load_fixture`` puts
them back so callers see the full set of tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"


def load_fixture(case: str, directory: Path | str = FIXTURES_DIR) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return ``(metadata, tensors)`` for ``case``, with aliased tensors restored."""
    directory = Path(directory)
    meta = json.loads((directory / f"{case}.json").read_text())
    tensors = load_file(str(directory / f"{case}.safetensors"))
    for name, how in meta.get("tensor_aliases", {}).items():
        if "same_as" in how:
            tensors[name] = tensors[how["same_as"]].clone()
        elif "per_sample_from" in how:
            tensors[name] = torch.stack([tensors[src][b] for b, src in enumerate(how["per_sample_from"])])
        else:
            raise ValueError(f"{case}: unknown alias spec for {name}: {how}")
    return meta, tensors
