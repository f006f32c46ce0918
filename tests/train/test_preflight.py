"""``restok train ... --preflight``: ready on a sound set-up; each blocker named in one line with a nonzero exit --
batch arithmetic, disk, memory, and (two "nodes" on the loopback address) a --out that is not shared and data that
differs between ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import launch_ranks, run_cli, write_image_folder

pytest.importorskip("accelerate")
BASE = ["train", "tokenizer", "--config", "restok-tiny", "--preflight", "--device", "cpu", "trackers=[]"]


def test_ready_and_blockers_in_one_process(image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    ok = run_cli(*BASE, "--data", image_folder, "--out", tmp_path / "a", "batch_size=4")
    assert ok.returncode == 0 and "preflight: ready" in ok.stdout, ok.stdout + ok.stderr
    assert "all-reduce over 1 processes" in ok.stdout and "training state for 2,222,971 parameters" in ok.stdout
    assert not (tmp_path / "a" / "checkpoints").exists()  # nothing trained
    r = run_cli(*BASE, "--data", image_folder, "--out", tmp_path / "b", "batch_size=16", "grad_accum=3")
    assert r.returncode == 1 and "BLOCKED" in r.stdout
    assert any("blocker" in x and "not divisible by grad_accum=3" in x for x in r.stdout.splitlines())
    r = run_cli(*BASE, "--data", image_folder, "--out", tmp_path / "c", "batch_size=16")
    assert any("blocker" in x and "fewer than one global batch of 16" in x for x in r.stdout.splitlines())
    import shutil

    import restok.train.preflight as pf

    monkeypatch.setattr(pf.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    monkeypatch.setattr(pf, "available_memory", lambda device: 1000)
    r = run_cli(*BASE, "--data", image_folder, "--out", tmp_path / "d", "batch_size=4", "keep_checkpoints=3")
    lines = [x for x in r.stdout.splitlines() if "] blocker:" in x]
    assert r.returncode == 1 and len(lines) == 2, r.stdout
    assert "4 checkpoints" in lines[0] + lines[1] and "free on cpu" in lines[0] + lines[1]


@pytest.mark.slow
def test_two_nodes_with_different_out_and_data_are_blocked(tmp_path: Path) -> None:
    """Two "machines" of one process each (the variables of torchrun --nnodes 2 --nproc-per-node 1; real agents are
    run by tests/train/test_multinode.py), each given its own --out and data: both are named."""
    data = [write_image_folder(tmp_path / f"img{i}", classes=2, per_class=4 + i) for i in range(2)]
    per_rank = [["--data", str(data[i]), "--out", str(tmp_path / f"out{i}")] for i in range(2)]
    ran = launch_ranks([*BASE, "batch_size=4"], 29761, rank_args=per_rank, nodes=True)
    text = ran.stdout + ran.stderr
    assert ran.returncode == 1, text[-3000:]
    assert "all-reduce over 2 processes" in text
    assert "is not the folder rank 0 writes to" in text and "ranks see different data" in text, text[-3000:]


def test_devices_fit_the_global_batch_as_micro_batches_and_accumulation(
    image_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    from restok.train import load_train_config
    from restok.train.preflight import activation_bytes, fit_to_devices

    cfg = load_train_config("restok-tiny", "tokenizer", ["batch_size=8"])
    roomy, plan = fit_to_devices(cfg, "tokenizer", str(image_folder), 2, 10**12)
    assert roomy.grad_accum == 1 and roomy.batch_size == 8 and "8 = 2 x 4 per micro-batch x 1" in plan
    from restok.models import ResTok
    from restok.models.restok.config import TOKENIZER_PRESETS

    mc = TOKENIZER_PRESETS["restok-tiny"]
    tight = (
        20 * ResTok.parameter_count(mc) + activation_bytes("tokenizer", mc, 4, 2, "no") + 1
    )  # room for 2 images at once
    fitted, plan = fit_to_devices(cfg, "tokenizer", str(image_folder), 2, tight)
    assert (
        (fitted.batch_size, fitted.grad_accum) == (8, 2)
        and fitted.optimizer == cfg.optimizer
        and "x 2 per micro-batch x 2" in plan
    )
    with pytest.raises(ValueError, match="does not split over 3 devices"):
        fit_to_devices(cfg, "tokenizer", str(image_folder), 3, None)
    with pytest.raises(ValueError, match="even one image"):
        fit_to_devices(cfg, "tokenizer", str(image_folder), 1, 1000)
    # through the command line: the plan is printed, and the run trains as with that grad_accum set by hand
    args = [
        "train",
        "tokenizer",
        "--config",
        "restok-tiny",
        "--data",
        str(image_folder),
        "--max-steps",
        "2",
        "--no-progress",
        "--device",
        "cpu",
        "batch_size=4",
        "log_every=1",
        "save_every=2",
        "image_every=3",
        "trackers=[]",
    ]
    r = run_cli(*args, "--devices", "1", "--memory-per-device", str(tight / 1e9), "--out", str(tmp_path / "fit"))
    assert r.returncode == 0 and "global batch 4 = 1 x 2 per micro-batch x 2 accumulation" in r.stdout, (
        r.stdout + r.stderr
    )
    by_hand = run_cli(*args, "grad_accum=2", "--out", str(tmp_path / "hand"))
    assert by_hand.returncode == 0
    import yaml

    assert yaml.safe_load((tmp_path / "fit" / "config.yaml").read_text())["grad_accum"] == 2
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("fit", "hand"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for k, v in (("WORLD_SIZE", "4"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29999")):
        monkeypatch.setenv(k, v)  # as a launcher of 4 processes sets them
    r = run_cli(*args, "--devices", "2", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "the launcher started 4 processes" in r.stderr


def test_a_collective_that_hangs_is_reported_within_the_timeout() -> None:
    import threading
    import time as _time

    from restok.train.preflight import _collective

    class Hung:  # an accelerator whose all-reduce never returns (a peer behind a firewall)
        device, num_processes = "cpu", 2

        def reduce(self, t, op):  # noqa: ANN001, ANN201
            threading.Event().wait()

    t0 = _time.perf_counter()
    ok, secs, error = _collective(Hung(), 0.5)
    assert not ok and error is None and 0.5 <= secs < 2 and _time.perf_counter() - t0 < 2


def test_devices_above_one_needs_a_launch_and_peer_messages_need_several_processes(
    image_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    r = run_cli(
        "train",
        "tokenizer",
        "--config",
        "restok-tiny",
        "--data",
        image_folder,
        "--out",
        tmp_path / "a",
        "--devices",
        "4",
    )
    assert r.returncode == 2 and "torchrun --nproc-per-node 4" in r.stderr
    from restok.cli import _peer_lost

    assert _peer_lost(BrokenPipeError("Broken pipe")) is None  # one process: a closed pipe is just that
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _peer_lost(BrokenPipeError("Broken pipe")) is None
    assert "another process of this run stopped" in _peer_lost(
        RuntimeError("[gloo] Connection closed by peer [127.0.0.1]:1")
    )
