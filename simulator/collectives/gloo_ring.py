"""gloo's own ring schedules as simulator collectives: segmented, two operations in flight.

Registered in :data:`gradwire.simulator.collectives.COLLECTIVES` on import:

* ``gloo_ring_allreduce`` -- gloo's ``ring`` allreduce (``gloo/allreduce.cc``): the buffer
  of M bytes is cut into ``n = roundup(max(ceil(M / 1 MiB), 2p), p)`` segments of M/n
  bytes; reduce-scatter then allgather each run ``n - n/p`` iterations in which every rank
  sends one segment to its successor, and iteration i is issued once iteration i-2 has
  completed (two operations in flight). Every rank sends ``2(p-1)/p · M`` bytes, as in the
  lock-step ring, but each segment pays its own message overhead, hidden behind the other
  segment in flight whenever that one is longer.
* ``gloo_ring_allgather`` -- gloo's allgather (``gloo/allgather.cc``): each rank's payload
  is split in two halves; ``2(p-1)`` iterations forward one half each, again two in
  flight, so a step's latency hides behind the other half's transfer.

Both are generator functions with the uniform collective signature of
:mod:`gradwire.simulator.collectives.base`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import simpy

from gradwire.errors import ConfigError
from gradwire.simulator.collectives.base import CollectiveProcess, check_args, collective
from gradwire.simulator.network import Network

GLOO_MAX_SEGMENT_BYTES = 1024 * 1024  # gloo AllreduceOptions kMaxSegmentSize
IN_FLIGHT = 2


def gloo_segments(total_bytes: float, p: int, max_segment_bytes: float = GLOO_MAX_SEGMENT_BYTES) -> int:
    """gloo's segment count for a ring allreduce of ``total_bytes`` over ``p`` ranks."""
    n = max(math.ceil(total_bytes / max_segment_bytes), 2 * p)
    return math.ceil(n / p) * p


def _pipelined(net: Network, src: np.ndarray, dst: np.ndarray, sizes: Sequence[np.ndarray | float],
               tag: str) -> CollectiveProcess:
    """Issue batch i once batch i - IN_FLIGHT has completed; wait for all at the end."""
    done: list[simpy.Event] = []
    for i, size in enumerate(sizes):
        if i >= IN_FLIGHT:
            yield done[i - IN_FLIGHT]
        done.append(net.transfers(src, dst, size, f"{tag}{i}"))
    pending = [ev for ev in done[-IN_FLIGHT:] if not ev.processed]
    if pending:
        yield simpy.AllOf(net.env, pending)


def gloo_ring_allreduce(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                        max_segment_bytes: float = GLOO_MAX_SEGMENT_BYTES,
                        tag: str = "gloo_ring_allreduce") -> CollectiveProcess:
    """gloo ring allreduce of ``sizes[0]`` bytes per rank (see the module docstring)."""
    r, s = check_args(net, ranks, sizes, "gloo_ring_allreduce")
    p = len(r)
    if p == 1:
        return
    total = float(s.max())
    n = gloo_segments(total, p, max_segment_bytes)
    seg = total / n
    iters = n - n // p
    nxt = np.roll(r, -1)
    yield from _pipelined(net, r, nxt, [seg] * iters, f"{tag}:rs")
    yield from _pipelined(net, r, nxt, [seg] * iters, f"{tag}:ag")


def gloo_ring_allgather(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                        tag: str = "gloo_ring_allgather") -> CollectiveProcess:
    """gloo allgather: ``sizes[i]`` is rank i's payload, forwarded in two halves per step."""
    r, s = check_args(net, ranks, sizes, "gloo_ring_allgather")
    p = len(r)
    if p == 1:
        return
    idx = np.arange(p)
    first = np.floor(s / 2)
    halves = (first, s - first)
    chunks = [halves[i & 1][(idx - i // 2) % p] for i in range(2 * (p - 1))]
    yield from _pipelined(net, r, np.roll(r, -1), chunks, f"{tag}:")


def gloo_pair_allgather(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                        tag: str = "gloo_pair_allgather") -> CollectiveProcess:
    """Two ranks swapping payloads as one send and one receive over gloo's one connection.

    gloo sends only after the peer's receive-ready notification, and on the pair's single
    connection that notification queues behind data already flowing the other way: the
    second direction starts when the first has drained, so the two transfers run one
    after the other even though both are posted at once (measured on shaped links: the
    exchange takes the time of both payloads, not of the larger one).
    """
    r, s = check_args(net, ranks, sizes, "gloo_pair_allgather")
    if len(r) == 1:
        return
    if len(r) != 2:
        raise ConfigError(f"gloo_pair_allgather: exactly 2 ranks, got {len(r)}; use gloo_ring_allgather")
    yield net.transfer(int(r[0]), int(r[1]), float(s[0]), tag=f"{tag}:0")
    yield net.transfer(int(r[1]), int(r[0]), float(s[1]), tag=f"{tag}:1")


_GLOO_WHY = ("two segments in flight hide each message's overhead behind the other's transfer "
             "only partly; checked against gloo itself on shaped links (run_sim.py validate)")
collective("gloo_ring_allreduce", carries="sum", no_closed_form_why=_GLOO_WHY)(gloo_ring_allreduce)
collective("gloo_ring_allgather", carries="any", delivers="all", length_prefix=True,
           no_closed_form_why=_GLOO_WHY)(gloo_ring_allgather)
collective("gloo_pair_allgather", carries="any", delivers="all", length_prefix=True,
           no_closed_form_why="the two directions run one after the other: sum of the two payloads' "
                              "transfer times, checked against gloo on shaped links")(gloo_pair_allgather)
