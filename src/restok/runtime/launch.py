"""What a launcher (``torchrun``, ``accelerate launch``, a SLURM script) told this process, checked in one place, and
the start-up of the process group inside a stated time.

The launcher's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) are read by :func:`launch_env` only: a value that is not an integer, a rank outside the world or a
multi-process world without its rendezvous address is refused in one line naming the variable. :func:`rendezvous`
then joins the processes before the process group is made: each process registers under its rank in the launcher's
store and waits until every rank has, for at most the start-up timeout (``--startup-timeout`` or
``RESTOK_STARTUP_TIMEOUT``, default 300 s), so a process whose peers never start fails with the line that names the
missing ranks instead of waiting for the collective library's own timeout (30 minutes). The collectives of the run
keep the library's default timeout: a long evaluation on the main process is not a missing peer.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = ["LaunchEnv", "LaunchError", "launch_env", "startup_timeout", "rendezvous", "STARTUP_TIMEOUT_ENV"]

STARTUP_TIMEOUT_ENV = "RESTOK_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT = 300.0
_ATTEMPT = itertools.count()  # every process calls rendezvous in the same order: one key space per call


class LaunchError(ValueError):
    """Launcher variables that contradict each other, or peers that did not start in time."""


@dataclass(frozen=True)
class LaunchEnv:
    """This process's place in the run, as the launcher set it (one process when no launcher did)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    master_addr: str | None = None
    master_port: int | None = None


def _int_var(name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    """An integer launcher variable in [low, high], or a LaunchError naming it."""
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise LaunchError(f"{name}={text!r} is not an integer (as the launcher sets it)") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise LaunchError(f"{name}={value} must be {bound}")
    return value


def launch_env() -> LaunchEnv:
    """The launcher's variables, each checked and checked against the others (one LaunchError line otherwise)."""
    world = _int_var("WORLD_SIZE", 1, 1, 1 << 20)
    rank = _int_var("RANK", 0, 0, 1 << 20)
    assert world is not None and rank is not None
    if rank >= world:
        raise LaunchError(f"RANK={rank} is not below WORLD_SIZE={world}: ranks run 0..{world - 1}")
    local_world = _int_var("LOCAL_WORLD_SIZE", None, 1, world)
    local_rank = _int_var("LOCAL_RANK", None, 0, 1 << 20)
    if local_rank is not None and local_world is not None and local_rank >= local_world:
        raise LaunchError(f"LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE={local_world}")
    port = _int_var("MASTER_PORT", None, 1, 65535)
    addr = os.environ.get("MASTER_ADDR") or None
    if world > 1 and (addr is None or port is None):
        missing = " and ".join(n for n, v in (("MASTER_ADDR", addr), ("MASTER_PORT", port)) if v is None)
        verb = "are" if " and " in missing else "is"
        raise LaunchError(
            f"WORLD_SIZE={world} but {missing} {verb} not set: start the processes with torchrun or accelerate launch "
            "(they set them), or set them to the address of rank 0"
        )
    return LaunchEnv(rank, world, local_rank or 0, local_world or 1, addr, port)


def world_size_or_one() -> int:
    """``WORLD_SIZE`` when it is a valid integer, else 1 (for error handlers, which must never raise)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def startup_timeout(seconds: float | None = None) -> float:
    """Seconds the processes have to find each other: ``seconds``, else ``RESTOK_STARTUP_TIMEOUT``, else 300."""
    if seconds is not None:
        return float(seconds)
    text = os.environ.get(STARTUP_TIMEOUT_ENV)
    if text is None:
        return DEFAULT_STARTUP_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:
        raise LaunchError(f"{STARTUP_TIMEOUT_ENV}={text!r} must be a number of seconds in (0, 86400]")
    return value


def _store(env: LaunchEnv, timeout: float) -> Any:
    """The launcher's key-value store (torchrun's agent hosts it), or one rank 0 hosts at MASTER_ADDR:MASTER_PORT."""
    from torch.distributed import TCPStore

    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    where = f"{env.master_addr}:{env.master_port}"
    if not (env.rank == 0 and not agent) and not _reachable(env.master_addr, env.master_port, timeout):
        raise LaunchError(
            f"rank {env.rank} could not reach the rendezvous at {where} within {timeout:g} s: rank 0 did not start "
            "(or MASTER_ADDR/MASTER_PORT differ between nodes)"
        )
    try:
        return TCPStore(
            env.master_addr,
            env.master_port,
            env.world,
            is_master=env.rank == 0 and not agent,
            timeout=timedelta(seconds=timeout),
            wait_for_workers=False,
            multi_tenant=True,
        )
    except Exception as e:  # noqa: BLE001 - a refused or unreachable address: said in one line
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if env.rank == 0 and not agent:
            raise LaunchError(f"rank 0 cannot host the rendezvous at {where} ({first})") from None
        raise LaunchError(
            f"rank {env.rank} could not reach the rendezvous at {where} within {timeout:g} s: rank 0 did not start "
            f"(or MASTER_ADDR/MASTER_PORT differ between nodes) ({first})"
        ) from None


def _reachable(addr: str | None, port: int | None, timeout: float) -> bool:
    """Whether ``addr:port`` accepts a connection within ``timeout`` s (tried here, so that a host that never comes
    up is one line, not the store client's logged retries)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((addr, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _join(store: Any, env: LaunchEnv, timeout: float) -> None:
    """Register this rank and wait for every other, naming the missing ones when ``timeout`` passes."""
    from torch.distributed import PrefixStore

    attempt = f"restok-join/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{next(_ATTEMPT)}"
    keys = PrefixStore(attempt, store)
    keys.set(f"rank-{env.rank}", socket.gethostname())
    keys.add("joined", 1)
    deadline = time.monotonic() + timeout
    while keys.add("joined", 0) < env.world:
        if time.monotonic() > deadline:
            missing = [r for r in range(env.world) if not keys.check([f"rank-{r}"])]
            shown = ", ".join(map(str, missing[:16])) + (", ..." if len(missing) > 16 else "")
            raise LaunchError(
                f"rank(s) {shown} of WORLD_SIZE={env.world} did not start within {timeout:g} s (rendezvous at "
                f"{env.master_addr}:{env.master_port}): start every process, or give them longer with "
                f"--startup-timeout / {STARTUP_TIMEOUT_ENV}"
            )
        time.sleep(0.05)


def rendezvous(device_type: str, seconds: float | None = None) -> LaunchEnv:
    """Check the launcher's variables and, with several processes, join them and make the process group (gloo, or
    NCCL on CUDA) within :func:`startup_timeout`; a no-op for one process or a group that exists already."""
    env = launch_env()
    timeout = startup_timeout(seconds)
    import torch.distributed as dist

    if env.world < 2 or not dist.is_available() or dist.is_initialized():
        return env
    store = _store(env, timeout)
    _join(store, env, timeout)
    backend = "nccl" if device_type == "cuda" else "gloo"
    # the run's collectives keep the library's default timeout: only the start-up is bounded by ``timeout``
    dist.init_process_group(backend, store=store, rank=env.rank, world_size=env.world)
    return env
