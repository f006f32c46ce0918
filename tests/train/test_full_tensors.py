"""``restok.train.distributed.full_tensors``: the whole tensors behind FSDP2 shards in one all-gather per dtype --
dim-0 chunks of every size two processes make (more rows than ranks, fewer, none, odd), two dtypes, and a replicated
DTensor (gathered alone) -- equal to each tensor's own ``full_tensor()``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ENV

_SCRIPT = """
import os, sys
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1], WORLD_SIZE="2")
pids = []
for rank in range(2):
    pid = os.fork()
    if pid == 0:
        os.environ["RANK"] = str(rank)
        dist.init_process_group("gloo", rank=rank, world_size=2)
        from restok.train.distributed import full_tensors

        mesh = init_device_mesh("cpu", (2,))
        g = torch.Generator().manual_seed(0)  # the same whole tensors on both processes
        whole = {
            "rows5x3": torch.randn(5, 3, generator=g),
            "one_row": torch.randn(1, 4, generator=g),
            "empty": torch.randn(0, 2, generator=g),
            "vector7": torch.randn(7, generator=g),
            "double4x2x2": torch.randn(4, 2, 2, generator=g, dtype=torch.float64),
            "plain": torch.randn(3, generator=g),
            "replicated": torch.randn(2, 2, generator=g),
        }
        given = {
            n: t if n == "plain" else distribute_tensor(t, mesh, [Replicate() if n == "replicated" else Shard(0)])
            for n, t in whole.items()
        }
        got = full_tensors(given)
        assert list(got) == list(whole), list(got)
        for n, t in whole.items():
            assert got[n].dtype == t.dtype and torch.equal(got[n], t), n
        dist.destroy_process_group()
        os._exit(0)
    pids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
sys.exit(next((c for c in codes if c), 0))
"""


@pytest.mark.slow
def test_full_tensors_equal_each_tensors_own_gather() -> None:
    r = subprocess.run([sys.executable, "-c", _SCRIPT, "29771"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
