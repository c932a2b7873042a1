"""Ring allreduce: reduce-scatter then allgather around a ring (Patarasuk and Yuan 2009).

p ranks, buffer M: 2(p-1) lock-step steps, each rank sending one M/p chunk to its
successor; on dedicated links the time is ``2(p-1)·alpha + 2(p-1)/p · M/B``.
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


@collective("ring_allreduce", carries="sum", closed_form=analytic.cf_ring_allreduce)
def ring_allreduce(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                   tag: str = "ring_allreduce") -> CollectiveProcess:
    """Ring allreduce of ``sizes[i]`` bytes per rank; rank i's chunks are ``sizes[i]/p``."""
    r, s = check_args(net, ranks, sizes, "ring_allreduce")
    p = len(r)
    if p == 1:
        return
    chunk = s / p
    yield from ring_steps(net, r, np.roll(r, -1), lambda _step: chunk, 2 * (p - 1), f"{tag}:")
