"""Several machines, tested on one: two ``torchrun`` agents (``--nnodes 2``, c10d rendezvous on 127.0.0.1, one process
each) train a tiny tokenizer under FSDP; killing one node stops the other with one clear line, a rerun of both with
``--resume`` finishes the run, and the result is two local processes' weights bit for bit, written by rank 0 only."""

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

from tests.helpers import launch_ranks, require

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
    "loss.perceptual_weight=0",  # the objective's terms are tested elsewhere: here the processes and the machines
    "loss.alignment_weight=0",
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
def test_two_nodes_train_like_two_local_processes_survive_a_node_loss_and_only_rank_0_writes(
    image_folder: Path, tmp_path: Path
) -> None:
    """Under FSDP, the harder case (its shards and collectives cross the "machines"; DDP across processes is tested on
    one machine in tests/train/test_train.py, and the rendezvous is the same for both): one node is killed after
    step 2's checkpoint, the survivor stops with one line instead of hanging on a collective, both nodes rerun with
    --resume, and the end is the weights of two processes on one machine, bit for bit (resume on the same count is
    exact), written by global rank 0 alone."""
    steps = 6
    args = ["--data", str(image_folder), "--max-steps", str(steps), "distributed=fsdp"]
    port = 29711
    local = launch_ranks([*TRAIN, *args, "--out", str(tmp_path / "local")], port + 5)  # one machine, 2 processes
    assert local.returncode == 0, local.stderr[-2000:]
    out = tmp_path / "two"
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    host = node(port, out, logs[0], *args)
    time.sleep(1.0)  # the first agent hosts the rendezvous store
    other = node(port, out, logs[1], *args)
    deadline = time.time() + 180
    while not (out / "checkpoints" / "step-00000002").exists():
        assert time.time() < deadline and host.poll() is None and other.poll() is None, "the run did not reach step 2"
        time.sleep(0.1)
    t0 = time.time()
    kill_node(other)
    code = host.wait(timeout=120)  # the survivor must not hang on a collective
    text = logs[0].read_text()
    assert code != 0 and time.time() - t0 < 120, text[-2000:]
    assert "another process of this run stopped or became unreachable" in text and "--resume" in text, text[-3000:]
    # both nodes again, resuming from the newest complete checkpoint
    a, b, log_a, log_b = two_nodes(port + 1, out, *args, "--resume")
    assert a == b == 0, (log_a[-2000:], log_b[-2000:])
    weights = {run: load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("local", "two")}
    # two machines of one process each, killed and resumed = two processes on one machine, bit for bit
    assert weights["two"].keys() == weights["local"].keys()
    assert all(torch.equal(weights["two"][k], weights["local"][k]) for k in weights["local"])
    assert sum(f"finished at step {steps}" in x for x in (log_a, log_b)) <= 1  # only the main process reports
    lines = (out / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(x)["step"] for x in lines]
    assert sorted(set(logged)) == list(range(1, steps + 1)) and logged[-1] == steps  # by global rank 0 alone
    assert len(logged) - len(set(logged)) <= 4  # steps after the resumed checkpoint may be logged twice, never more
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept[-1] == f"step-{steps:08d}"
