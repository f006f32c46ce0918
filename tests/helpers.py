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
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside the block, as a launched process has it (OMP_NUM_THREADS=1): kernels that split a
    sum over threads add in another order otherwise, and results compared byte for byte with a process's differ."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


# The modules every launch needs, imported once per test worker by a fork server: restok's CLI and the training stack
# with its lazy imports (accelerate, FSDP2/DTensor, and the torch._dynamo + SymPy that torch.optim imports on first
# use). A fresh interpreter paid 3-4 s of CPU for them at every launch.
_PRELOAD = [
    "restok.cli",
    "accelerate",
    "safetensors.torch",
    "torch._dynamo",
    "torch.distributed.fsdp",
    "torch.distributed.tensor",
    "restok.train.loop",
    "restok.train.tokenizer",
    "restok.train.generator",
]
_FORKSERVER: list = []


def _launch(
    main: Callable[[list[str]], int | None],
    args: list[str],
    env: dict[str, str],
    cwd: str,
    rank_args: list[list[str]],
    nodes: bool,
    out: str,
) -> None:
    """One launch, in a child of the fork server (single-threaded, nothing run yet): its own session (so that a
    timeout can kill it whole), the caller's folder, the launch's variables and one thread, stdout/stderr into files,
    then one fork per rank, with the variables torchrun sets, calling ``main(args + rank_args[rank])``; exits with the
    first failing rank's status."""
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 would have at start-up: torch is already imported here
    sys.argv = ["-c", *args]
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(os.path.join(out, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    pids = []
    for rank in range(int(env["WORLD_SIZE"])):
        pid = os.fork()
        if pid == 0:
            if nodes:  # one process per "machine": node `rank`, its only local process
                os.environ.update(RANK=str(rank), LOCAL_RANK="0", GROUP_RANK=str(rank), ROLE_RANK=str(rank))
            else:
                os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
            try:
                code = main([*args, *rank_args[rank]])
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
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(next((c for c in codes if c), 0))


def launch_ranks(
    args: list[str],
    port: int,
    nproc: int = 2,
    rank_args: list[list[str]] | None = None,
    nodes: bool = False,
    main: Callable[[list[str]], int | None] | None = None,
) -> subprocess.CompletedProcess:
    """``restok ARGS`` on ``nproc`` processes with the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT, ...): what each rank sees is a torchrun launch, without an agent process or a fresh interpreter
    per rank (each launch is forked from a server that imported restok once). ``rank_args[r]`` is appended to rank
    r's arguments; ``nodes`` makes each rank a machine of its own (the variables of ``torchrun --nnodes NPROC
    --nproc-per-node 1``); ``main`` (a module-level function taking the arguments) runs instead of restok's CLI."""
    import multiprocessing
    import signal
    import tempfile

    if not _FORKSERVER:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        _FORKSERVER.append(ctx)
    local = 1 if nodes else nproc
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    env.update(WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(local), ROLE_WORLD_SIZE=str(nproc), GROUP_RANK="0")
    env.update(ROLE_RANK="0")
    env = {k: v for k, v in env.items() if not k.startswith("PYTEST_")}  # the ranks are not test workers
    with tempfile.TemporaryDirectory() as out:
        if main is None:
            from restok.cli import main
        launch = (main, list(args), env, os.getcwd(), rank_args or [[]] * nproc, nodes, out)
        p = _FORKSERVER[0].Process(target=_launch, args=launch)
        p.start()
        p.join(timeout=300)
        if p.exitcode is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.join()
            raise subprocess.TimeoutExpired(["restok", *args], 300)
        text = [Path(out, name).read_text(errors="replace") for name in ("stdout", "stderr")]
    return subprocess.CompletedProcess(["restok", *args], p.exitcode, text[0], text[1])
