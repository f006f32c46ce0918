"""The launcher's variables checked in one place, and a start-up that ends within its stated time naming the missing
ranks (the class "start-up across processes is bounded")."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from restok.runtime.launch import LaunchError, launch_env, startup_timeout
from tests.helpers import ENV, one_line_error, run_process

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

BAD = [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2.5"}, "WORLD_SIZE"),
    ({"RANK": "-1"}, "RANK"),
    ({"RANK": "3", "WORLD_SIZE": "1"}, "RANK=3 is not below WORLD_SIZE=1"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK"),
    ({"LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2"}, "LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2"),
    ({"LOCAL_WORLD_SIZE": "3", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "LOCAL_WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "MASTER_PORT": "29500"}, "MASTER_ADDR"),
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT"),
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "70000"}, "MASTER_PORT"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("env,named", BAD, ids=[";".join(f"{k}={v}" for k, v in e.items()) for e, _ in BAD])
def test_inconsistent_launcher_variables_are_refused_in_one_line(monkeypatch, env: dict, named: str) -> None:
    for k in LAUNCHER_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(LaunchError, match=named) as e:
        launch_env()
    assert "\n" not in str(e.value)


def test_the_start_up_timeout_comes_from_the_option_then_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("RESTOK_STARTUP_TIMEOUT", raising=False)
    assert startup_timeout() == 300.0 and startup_timeout(7) == 7.0
    monkeypatch.setenv("RESTOK_STARTUP_TIMEOUT", "12.5")
    assert startup_timeout() == 12.5
    for bad in ("nan", "0", "-1", "1e30", "soon"):
        monkeypatch.setenv("RESTOK_STARTUP_TIMEOUT", bad)
        with pytest.raises(LaunchError, match="RESTOK_STARTUP_TIMEOUT"):
            startup_timeout()


def test_the_error_handler_never_raises_on_bad_launcher_variables(monkeypatch) -> None:
    from restok.cli import _peer_lost

    monkeypatch.setenv("WORLD_SIZE", "abc")
    assert _peer_lost(RuntimeError("[gloo] Connection closed by peer")) is None


def test_a_rank_outside_the_world_is_one_line_before_anything_waits(tmp_path: Path) -> None:
    env = {**ENV, "WORLD_SIZE": "1", "RANK": "3"}
    t0 = time.monotonic()
    r = run_process("generate", "--tokenizer", "x", "--generator", "y", "--classes", "1", "--out", tmp_path, env=env)
    assert time.monotonic() - t0 < 60
    one_line_error(r, "RANK=3", "WORLD_SIZE=1")


@pytest.mark.slow
@pytest.mark.parametrize("rank,named", [(0, "rank(s) 1 of WORLD_SIZE=2 did not start"), (1, "rank 0 did not start")])
def test_a_missing_peer_fails_within_the_preflight_timeout_naming_it(
    image_folder: Path, tmp_path: Path, rank: int, named: str
) -> None:
    pytest.importorskip("accelerate")
    port = _free_port()
    env = {**ENV, "WORLD_SIZE": "2", "RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    args = ["train", "tokenizer", "--config", "restok-tiny", "--device", "cpu", "trackers=[]"]
    args += ["--data", str(image_folder), "--out", str(tmp_path / "run")]
    # with --preflight its own timeout bounds the rendezvous; without, --startup-timeout does
    timing = ["--preflight", "--preflight-timeout", "2"] if rank == 0 else ["--startup-timeout", "2"]
    t0 = time.monotonic()
    r = run_process(*args, *timing, env=env, timeout=120)
    assert time.monotonic() - t0 < 40, "the start-up was not bounded"
    one_line_error(r, named)
