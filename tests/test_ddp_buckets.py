"""What the simulator assumes about DDP against DDP itself, on a one-process gloo group:
its bucket assignment, and the bytes the PowerSGD hook really puts into its two rounds."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from gradwire.codecs import make_codec
from gradwire.codecs.ddp_hook import make_ddp_hook
from gradwire.iteration import DDP_BUCKET_CAP_MIB, DDP_FIRST_BUCKET_BYTES, ddp_buckets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def group():
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(_free_port())
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _model() -> nn.Module:
    torch.manual_seed(0)
    # ~7.6 MiB of fp32 over layers of mixed sizes: several buckets at a 2 MiB cap
    return nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(),
                         nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 10))


def _ready_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    order: list[str] = []
    handles = [p.register_post_accumulate_grad_hook(lambda _p, n=n: order.append(n))
               for n, p in model.named_parameters()]
    model(x).sum().backward()
    for h in handles:
        h.remove()
    model.zero_grad(set_to_none=True)
    return order


@pytest.mark.parametrize("cap_mib", [None, 2.0, 3.0])
def test_bucketing_equals_ddps_own_assignment(group, cap_mib: float | None) -> None:
    """DDP's default (25 MiB after a 1 MiB first bucket) and explicit caps (no small first
    bucket), after DDP's rebuild in gradient-ready order."""
    x = torch.randn(8, 64)
    plain = _model()
    names = _ready_order(plain, x)
    numel = dict((n, p.numel()) for n, p in plain.named_parameters())
    cap = (cap_mib or DDP_BUCKET_CAP_MIB) * 2**20
    first = DDP_FIRST_BUCKET_BYTES if cap_mib is None else cap
    ours = [[names[i] for i in g] for g in ddp_buckets([numel[n] for n in names], cap, first_bucket_bytes=first)]
    ddp = DDP(_model(), bucket_cap_mb=cap_mib)
    by_id = {id(p): n for n, p in ddp.module.named_parameters()}
    seen: dict[int, list[str]] = {}

    def hook(_state, bucket):
        seen[bucket.index()] = [by_id[id(p)] for p in bucket.parameters()]
        fut = torch.futures.Future()
        fut.set_result(bucket.buffer())
        return fut

    ddp.register_comm_hook(None, hook)
    for _ in range(3):  # DDP rebuilds its buckets in gradient-ready order after the first step
        seen.clear()
        ddp(x).sum().backward()
    theirs = [sorted(seen[i]) for i in sorted(seen)]
    assert sorted(map(sorted, ours)) == sorted(theirs)
    assert len(ours) == len(theirs) >= 2


def test_powersgd_hook_bytes_equal_the_simulated_round_bytes(group) -> None:
    codec = make_codec("powersgd(rank=2)")
    ddp = DDP(_model(), bucket_cap_mb=2.0)
    state, hook = make_ddp_hook(codec)
    ddp.register_comm_hook(state, hook)
    x = torch.randn(8, 64)
    for _ in range(3):
        ddp(x).sum().backward()
    calls = state.log[-len({c.index for c in state.log}):]
    assert len(calls) >= 2
    total_hook = sum(c.wire_bytes for c in calls)
    total_sim = 0
    for p in ddp.module.parameters():
        g = torch.randn_like(p)
        bits = codec.round_bits(codec.encode(g).nbits, tuple(p.shape))
        total_sim += sum((b + 7) // 8 for b in bits)
    assert total_hook == total_sim
