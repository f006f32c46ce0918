"""What the command-line tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from restok import ResTok


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded restok-tiny saved as a model folder (one per test module)."""
    d = tmp_path_factory.mktemp("tok") / "tok"
    torch.manual_seed(0)
    ResTok.from_preset("restok-tiny").save_pretrained(d)
    return d
