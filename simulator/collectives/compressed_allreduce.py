"""Compressed ring allreduce: reduce-scatter and allgather of compressed chunks.

Quantized payloads cannot be summed as they are, so at every reduce-scatter hop the
receiver decodes the incoming chunk, adds its own and re-encodes the partial sum before
forwarding it: ``hop_s`` seconds per hop (measured codec time, an input). The allgather
then forwards the finished compressed chunks (``ag_hop_s`` per hop, default 0). With
``sizes[i]`` the compressed size of rank i's whole buffer, chunks are ``sizes[i]/p``; the
time on dedicated links is
``(p-1)·(alpha + m/(p·B) + hop_s) + (p-1)·(alpha + m/(p·B) + ag_hop_s)``, m = max(sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradwire.simulator.collectives.base import (
    COLLECTIVES,
    CollectiveProcess,
    check_args,
    check_seconds,
    ring_steps,
)
from gradwire.simulator.network import Network


@COLLECTIVES.register("compressed_allreduce")
def compressed_allreduce(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                         hop_s: float = 0.0, ag_hop_s: float = 0.0,
                         tag: str = "compressed_allreduce") -> CollectiveProcess:
    """Ring reduce-scatter + allgather of compressed chunks with codec time per hop."""
    r, s = check_args(net, ranks, sizes, "compressed_allreduce")
    hop = check_seconds(hop_s, "compressed_allreduce hop_s")
    ag_hop = check_seconds(ag_hop_s, "compressed_allreduce ag_hop_s")
    p = len(r)
    if p == 1:
        return
    chunk = s / p
    nxt = np.roll(r, -1)
    yield from ring_steps(net, r, nxt, lambda _k: chunk, p - 1, f"{tag}:rs", hop)
    yield from ring_steps(net, r, nxt, lambda _k: chunk, p - 1, f"{tag}:ag", ag_hop)
