"""Helpers shared by the tests: the command line run in-process (and, for exit codes, signals and launchers, in a
real process), tiny data and models, and the stand-in FID Inception."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@dataclass
class Ran:
    """What a command line did: its exit status and output (as ``subprocess.CompletedProcess`` names them)."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Ran:
    """``restok ARGS`` run in this process through ``restok.cli.main`` (no new interpreter, no second ``import
    torch``)."""
    from restok.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Ran(code, out.getvalue(), err.getvalue())


def run_process(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300, **kwargs: object
) -> subprocess.CompletedProcess:
    """``python -m restok ARGS`` in a new process: for exit statuses as a shell sees them, signals and launchers."""
    return subprocess.run(
        [sys.executable, "-m", "restok", *map(str, args)],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=timeout,
        **kwargs,
    )


def one_line_error(r: Ran | subprocess.CompletedProcess, *words: str) -> None:
    """Assert a failed command printed one ``error:`` line (no traceback) holding every word."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "%|" not in ln]
    assert lines and lines[-1].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[-1], (w, lines[-1])


def official_keys(kind: str) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the official tokenizer/generator checkpoints (from the reference key lists)."""
    out = {}
    for line in (DATA / f"official-{kind}-keys.tsv").read_text().splitlines():
        name, shape, _ = line.split("\t")
        out[name] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return out


def write_image_folder(
    root: Path, classes: int = 2, per_class: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0
) -> Path:
    """A class-per-folder tree of small random PNGs whose dominant colour channel is the class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = (rng.random((*size, 3)) * 120).astype("uint8")
            a[:, :, c % 3] = 220
            Image.fromarray(a).save(d / f"{i:03d}.png")
    return root


def require(module: str):  # type: ignore[no-untyped-def]
    """Import an optional test dependency: skip when it is missing locally, fail under CI (which installs it)."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def require_compiler() -> None:
    """Inductor's CPU kernels need a C++ compiler: skip without one locally, fail under CI (which installs g++)."""
    import shutil

    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        if os.environ.get("RESTOK_REQUIRE_COMPILER") or os.environ.get("CI"):
            pytest.fail("no C++ compiler (g++) for torch.compile's CPU backend; CI installs it")
        pytest.skip("no C++ compiler for torch.compile's CPU backend")


STAND_IN_FEATURES = 64


class TinyInception(torch.nn.Module):
    """Stands in for the FID Inception: same interface (299 px in [-1, 1) -> (B, F)), with F = 64 features instead of
    2,048 so that the exact SciPy ``sqrtm`` FID takes milliseconds, not the ~12 s of a 2048-d one on 2 cores."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 7, stride=7)
        self.fc = torch.nn.Linear(8 * 16, STAND_IN_FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4)
        return torch.relu(self.fc(h.flatten(1)))


# What each process of a launch runs: restok imported once, then one fork per rank with the variables torchrun sets
# (the ranks share the parent's imports instead of paying for them each; nothing has touched threads or the process
# group before the fork). The training stack's lazy imports come first too: accelerate, FSDP2/DTensor, and the
# torch._dynamo (+ SymPy) that torch.optim and the meta-device parameter count import on first use -- 1-2 s per rank.
_RANKS = """
import json, os, sys
from restok.cli import main
import accelerate, safetensors.torch, torch._dynamo, torch.distributed.fsdp, torch.distributed.tensor
import restok.train.loop, restok.train.tokenizer, restok.train.generator
plan = json.loads(os.environ.pop("RESTOK_TEST_RANKS"))
pids = []
for rank in range(int(os.environ["WORLD_SIZE"])):
    pid = os.fork()
    if pid == 0:
        if plan["nodes"]:  # one process per "machine": node `rank`, its only local process
            os.environ.update(RANK=str(rank), LOCAL_RANK="0", GROUP_RANK=str(rank), ROLE_RANK=str(rank))
        else:
            os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
        try:
            code = main(sys.argv[1:] + plan["extra"][rank])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    pids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
sys.exit(next((c for c in codes if c), 0))
"""


def launch_ranks(
    args: list[str], port: int, nproc: int = 2, rank_args: list[list[str]] | None = None, nodes: bool = False
) -> subprocess.CompletedProcess:
    """``restok ARGS`` on ``nproc`` processes with the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT, ...): what each rank sees is a torchrun launch, without an agent process or a fresh interpreter
    per rank. ``rank_args[r]`` is appended to rank r's arguments; ``nodes`` makes each rank a machine of its own (the
    variables of ``torchrun --nnodes NPROC --nproc-per-node 1``)."""
    import json

    local = 1 if nodes else nproc
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    env.update(WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(local), ROLE_WORLD_SIZE=str(nproc), GROUP_RANK="0")
    env.update(ROLE_RANK="0", RESTOK_TEST_RANKS=json.dumps({"extra": rank_args or [[]] * nproc, "nodes": nodes}))
    return subprocess.run([sys.executable, "-c", _RANKS, *args], capture_output=True, text=True, env=env, timeout=300)
