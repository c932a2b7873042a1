"""Ring allgather of per-rank payloads whose sizes may differ (Thakur et al. 2005).

At step k (0 <= k < p-1) rank i forwards the payload that originated at rank i-k to rank
i+1; steps are lock-step, so a step lasts as long as its largest chunk and, since every
step moves every payload but one, the time is ``(p-1)·(alpha + max_i m_i / B)``. This is
how quantized gradients, which cannot be summed without decoding, are usually exchanged.
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


@collective("ring_allgather", carries="any", delivers="all", length_prefix=True, closed_form=analytic.cf_ring_allgather)
def ring_allgather(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                   tag: str = "ring_allgather") -> CollectiveProcess:
    """Ring allgather: ``sizes[i]`` is the payload of rank ``ranks[i]``."""
    r, s = check_args(net, ranks, sizes, "ring_allgather")
    p = len(r)
    if p == 1:
        return
    idx = np.arange(p)
    yield from ring_steps(net, r, np.roll(r, -1), lambda step: s[(idx - step) % p], p - 1, f"{tag}:")
