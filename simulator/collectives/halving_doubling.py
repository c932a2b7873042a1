"""Recursive halving-doubling allreduce (Thakur, Rabenseifner and Gropp 2005).

Reduce-scatter by recursive halving (exchange half of the current block with the rank
at distance p/2, p/4, ..., 1) then allgather by recursive doubling (distance 1, 2, ...,
p/2): ``2·log2(p)·alpha + 2(p-1)/p · M/B`` for p a power of two. Otherwise the r = p - p'
ranks above the largest power of two p' first send their whole buffer to a partner and
get the result back at the end, adding ``2·(alpha + M/B)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradwire.simulator import analytic
from gradwire.simulator.collectives.base import CollectiveProcess, check_args, collective
from gradwire.simulator.network import Network


@collective("halving_doubling_allreduce", carries="sum", closed_form=analytic.cf_halving_doubling)
def halving_doubling_allreduce(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                               tag: str = "halving_doubling") -> CollectiveProcess:
    """Halving-doubling allreduce of ``sizes[i]`` bytes per rank (any p >= 1)."""
    r, s = check_args(net, ranks, sizes, "halving_doubling_allreduce")
    p = len(r)
    if p == 1:
        return
    q = 1 << (p.bit_length() - 1)  # largest power of two <= p
    extra = np.arange(q, p)
    if len(extra):
        yield net.transfers(r[extra], r[extra - q], s[extra], f"{tag}:fold")
    pos = np.arange(q)
    core = r[:q]
    block = s[:q].copy()
    dist = q // 2
    step = 0
    while dist >= 1:
        block = block / 2
        yield net.transfers(core, core[pos ^ dist], block, f"{tag}:rs{step}")
        dist //= 2
        step += 1
    dist = 1
    while dist < q:
        yield net.transfers(core, core[pos ^ dist], block, f"{tag}:ag{step}")
        block = block * 2
        dist *= 2
        step += 1
    if len(extra):
        yield net.transfers(r[extra - q], r[extra], s[extra - q], f"{tag}:unfold")
