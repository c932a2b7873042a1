"""All-to-all personalized exchange: every rank sends a distinct chunk to every other rank.

Rank i splits its ``sizes[i]`` bytes into p chunks and sends chunk j to rank j, all at
once (one batch of p(p-1) flows), so the pattern loads the network's bisection: on a
non-blocking switch it takes ``alpha + (p-1)/p · M/B``; on an oversubscribed fabric the
uplinks bound it. Used to check fabrics against their bisection bandwidth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradwire.simulator import analytic
from gradwire.simulator.collectives.base import CollectiveProcess, check_args, collective
from gradwire.simulator.network import Network


@collective("alltoall", carries="none", closed_form=analytic.cf_alltoall)
def alltoall(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
             tag: str = "alltoall") -> CollectiveProcess:
    """All-to-all of ``sizes[i]/p`` bytes from rank ``ranks[i]`` to each other rank."""
    r, s = check_args(net, ranks, sizes, "alltoall")
    p = len(r)
    if p == 1:
        return
    i, j = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    off = i != j
    yield net.transfers(r[i[off]], r[j[off]], (s / p)[i[off]], tag)
