"""Ring reduce-scatter: the first half of ring allreduce (Patarasuk and Yuan 2009).

p-1 lock-step steps, each rank sending one M/p chunk to its successor, after which rank i
holds the sum of chunk i: ``(p-1)·alpha + (p-1)/p · M/B`` on dedicated links. Sharded
data parallelism (ZeRO, FSDP) reduces gradients this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradwire.simulator import analytic
from gradwire.simulator.collectives.base import (
    CollectiveProcess,
    check_args,
    collective,
    ring_steps,
)
from gradwire.simulator.network import Network


@collective("ring_reduce_scatter", carries="none", closed_form=analytic.cf_ring_reduce_scatter)
def ring_reduce_scatter(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                        tag: str = "ring_reduce_scatter") -> CollectiveProcess:
    """Ring reduce-scatter of ``sizes[i]`` bytes per rank; rank i's chunks are ``sizes[i]/p``."""
    r, s = check_args(net, ranks, sizes, "ring_reduce_scatter")
    p = len(r)
    if p == 1:
        return
    chunk = s / p
    yield from ring_steps(net, r, np.roll(r, -1), lambda _step: chunk, p - 1, f"{tag}:")
