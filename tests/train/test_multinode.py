"""Several machines, tested on one: two ``torchrun`` agents (``--nnodes 2``, c10d rendezvous on 127.0.0.1, one process
each) train a tiny tokenizer under FSDP like two processes on one machine; only global rank 0 writes; killing one node
stops the other with one clear line, and a rerun of both with ``--resume`` finishes the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import require, run_cli

psutil = require("psutil")  # comes with accelerate (the test extra)
pytest.importorskip("accelerate")

TRAIN = [
    "train",
    "tokenizer",
    "--config",
    "restok-tiny",
    "--no-progress",
    "--device",
    "cpu",
    "batch_size=4",
    "log_every=1",
    "save_every=2",
    "image_every=100",
    "trackers=[]",
    "loss.discriminator_weight=0",
]


def node(port: int, out: Path, log: Path, *args: str) -> subprocess.Popen:
    """One "machine": a torchrun agent joining a 2-node c10d rendezvous on the loopback address, in its own session."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        f"restok-test-{port}",
        "-m",
        "restok",
        *TRAIN,
        *args,
        "--out",
        str(out),
    ]
    return subprocess.Popen(
        cmd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def two_nodes(port: int, out: Path, *args: str, timeout: float = 300) -> tuple[int, int, str, str]:
    """Both nodes to the end: their exit statuses and outputs."""
    logs = [out.parent / f"{out.name}.node{i}.log" for i in range(2)]
    procs = [node(port, out, logs[0], *args)]
    time.sleep(1.0)  # the first agent hosts the rendezvous store
    procs.append(node(port, out, logs[1], *args))
    codes = [p.wait(timeout=timeout) for p in procs]
    return codes[0], codes[1], logs[0].read_text(), logs[1].read_text()


def kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL the agent and every process it started, as a machine going down."""
    parent = psutil.Process(proc.pid)
    for p in [*parent.children(recursive=True), parent]:
        p.kill()


@pytest.mark.slow
def test_two_nodes_train_like_one_process_and_only_rank_0_writes(image_folder: Path, tmp_path: Path) -> None:
    # FSDP, the harder of the two: its shards and collectives cross the "machines"; DDP across processes is
    # tested on one machine (tests/train/test_train.py), and the rendezvous is the same for both
    args = ["--data", str(image_folder), "--max-steps", "4", "distributed=fsdp"]
    port = 29711
    local = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(port + 5),
            "-m",
            "restok",
            *TRAIN,
            *args,
            "--out",
            str(tmp_path / "local"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert local.returncode == 0, local.stderr[-2000:]
    one = run_cli(*TRAIN, *args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    a, b, log_a, log_b = two_nodes(port, tmp_path / "two", *args)
    assert a == b == 0, (log_a[-2000:], log_b[-2000:])
    weights = {run: load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("local", "one", "two")}
    # two machines of one process each = two processes on one machine, bit for bit
    assert weights["two"].keys() == weights["local"].keys()
    assert all(torch.equal(weights["two"][k], weights["local"][k]) for k in weights["local"])
    # and one process up to the per-process loss draws and the reduction's rounding (README: equivalent, not bitwise)
    assert max((weights["one"][k] - weights["two"][k]).abs().max().item() for k in weights["one"]) < 1e-3
    assert sum("finished at step 4" in x for x in (log_a, log_b)) == 1  # the main process of the two reports
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]  # written once, by global rank 0
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]


@pytest.mark.slow
def test_killing_one_node_stops_the_other_and_a_rerun_resumes(image_folder: Path, tmp_path: Path) -> None:
    out, port = tmp_path / "run", 29721
    args = ["--data", str(image_folder), "--max-steps", "20"]
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    host = node(port, out, logs[0], *args)
    time.sleep(1.0)
    other = node(port, out, logs[1], *args)
    deadline = time.time() + 180
    while not (out / "checkpoints" / "step-00000004").exists():
        assert time.time() < deadline and host.poll() is None and other.poll() is None, "the run did not reach step 4"
        time.sleep(0.2)
    t0 = time.time()
    kill_node(other)
    code = host.wait(timeout=120)  # the survivor must not hang on a collective
    assert code != 0 and time.time() - t0 < 120
    text = logs[0].read_text()
    assert "another process of this run stopped or became unreachable" in text and "--resume" in text, text[-3000:]
    # both nodes again, resuming from the newest complete checkpoint
    a, b, log_a, log_b = two_nodes(port + 1, out, *args, "--resume")
    assert a == b == 0, (log_a[-2000:], log_b[-2000:])
    assert "finished at step 20" in log_a + log_b
    assert torch.isfinite(next(iter(load_file(str(out / "final" / "model.safetensors")).values()))).all()
