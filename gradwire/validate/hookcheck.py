"""Train a small model with every codec's DDP hook on loopback gloo processes.

:func:`run_hook_check` spawns ``world`` processes (``torch.multiprocessing``, gloo on
127.0.0.1 at a free port), and in each trains the same small seeded MLP for a few steps
once without a hook and once per codec with :func:`gradwire.codecs.ddp_hook.make_ddp_hook`.
It returns, per codec, the largest parameter difference between ranks (a correct hook
keeps every rank bit-identical) and the largest difference from the no-hook run (zero for
``fp32``, which is DDP's own allreduce). It is the check behind the hook tests and a quick
way to try a codec on real ``DistributedDataParallel`` before a shaped-network run.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from gradwire.errors import ConfigError


@dataclass(frozen=True)
class HookCheck:
    """Outcome of one codec: parameter spreads after training (absolute, max over elements)."""

    codec: str
    max_rank_diff: float  # max |param_rank_r - param_rank_0| over ranks and elements
    max_diff_vs_plain: float  # max |param - param of the no-hook run| on rank 0
    final_loss: float
    steps: int


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _small_model(seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    # Weight matrices of 16384 elements: above every codec's small-tensor threshold, so
    # each bucket really goes through the codec rather than its raw fallback.
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64),
                                torch.nn.ReLU(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def _train(codec: str | None, rank: int, steps: int, seed: int) -> tuple[list[torch.Tensor], float]:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from gradwire.codecs.ddp_hook import make_ddp_hook

    model = DDP(_small_model(seed), bucket_cap_mb=0.05)  # several buckets on purpose
    if codec is not None:
        # "name@allgather" sends the codec through the payload allgather path.
        spec, _, exchange = codec.partition("@")
        state, hook = make_ddp_hook(spec, exchange=exchange or "auto")
        model.register_comm_hook(state, hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(seed * 100 + rank)  # each rank its own data
    loss = torch.zeros(())
    for _ in range(steps):
        x = torch.randn(32, 64, generator=gen)
        y = torch.randint(0, 10, (32,), generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], float(loss.detach())


def _worker(rank: int, world: int, port: int, codecs: list[str], steps: int, seed: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        plain, _ = _train(None, rank, steps, seed)
        results: dict[str, Any] = {}
        for spec in codecs:
            params, loss = _train(spec, rank, steps, seed)
            flat = torch.cat([p.reshape(-1) for p in params])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            rank_diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
            plain_diff = float((flat - torch.cat([p.reshape(-1) for p in plain])).abs().max())
            results[spec] = HookCheck(spec, rank_diff, plain_diff, loss, steps)
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def run_hook_check(
    codecs: list[str], *, world: int = 2, steps: int = 3, seed: int = 0
) -> dict[str, HookCheck]:
    """Train with each codec's hook on ``world`` loopback gloo processes; see module doc.

    A codec written ``"spec@allgather"`` uses that exchange (see ``make_ddp_hook``).
    """
    if world < 2:
        raise ConfigError(f"run_hook_check: world must be >= 2 processes, got {world}")
    if steps < 1:
        raise ConfigError(f"run_hook_check: steps must be >= 1, got {steps}")
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="gradwire-hook-") as tmp:
        out = os.path.join(tmp, "result.pt")
        mp.spawn(_worker, args=(world, free_port(), list(codecs), steps, seed, out),
                 nprocs=world, join=True)
        result: dict[str, HookCheck] = torch.load(out, weights_only=False)
    return result
