"""``restok.train.distributed.full_tensors``: the whole tensors behind FSDP2 shards in one all-gather per dtype --
dim-0 chunks of every size two processes make (more rows than ranks, fewer, none, odd), two dtypes, and a replicated
DTensor (gathered alone) -- equal to the tensors they were sharded from."""

from __future__ import annotations

import os

import pytest
import torch

from tests.helpers import launch_ranks


def _check(argv: list[str]) -> int:
    """One process of the launch: shard known tensors over the two processes, gather them back, compare."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    from restok.train.distributed import full_tensors

    dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=2)
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
    return 0


@pytest.mark.slow
def test_full_tensors_equal_the_tensors_they_were_sharded_from() -> None:
    r = launch_ranks([], 29771, main=_check)
    assert r.returncode == 0, r.stderr[-3000:]
