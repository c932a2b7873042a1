"""Hierarchical allreduce: intra-server reduce-scatter, inter-server allreduce, intra-server
allgather (the two-level scheme of Horovod and NCCL on multi-GPU servers).

With S servers of g GPUs (the topology's ``servers``), intra-server rings move M/g chunks
over the fast links; then g concurrent inter-server rings, one per local GPU index, each
allreduce an M/g shard, so each server's NIC carries g flows at once. On one NIC of
bandwidth B_n and an intra link B_i the time is
``2(g-1)·(alpha_i + M/(g·B_i)) + 2(S-1)·(alpha_n + M/(S·B_n))``: the slow links see only
2(S-1) latencies instead of the flat ring's 2(p-1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradwire.errors import ConfigError
from gradwire.simulator import analytic
from gradwire.simulator.collectives.base import (
    CollectiveProcess,
    check_args,
    collective,
    ring_steps,
)
from gradwire.simulator.network import Network


def server_groups(net: Network, ranks: np.ndarray) -> np.ndarray:
    """``ranks`` grouped per server as an (S, g) array in the order of ``ranks``."""
    servers = net.topology.servers
    if servers is None:
        raise ConfigError(
            f"hierarchical_allreduce needs a topology with servers; {net.topology.name!r} has none "
            "(use the 'servers' topology or a flat collective)"
        )
    where = {r: s for s, members in enumerate(servers) for r in members}
    groups: dict[int, list[int]] = {}
    for r in ranks.tolist():
        groups.setdefault(where[r], []).append(r)
    sizes = {len(v) for v in groups.values()}
    if len(sizes) != 1:
        raise ConfigError(
            "hierarchical_allreduce needs the same number of ranks on every server, got "
            f"{sorted(len(v) for v in groups.values())}"
        )
    return np.array(list(groups.values()), dtype=np.int64)


@collective("hierarchical_allreduce", carries="sum", closed_form=analytic.cf_hierarchical_allreduce)
def hierarchical_allreduce(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                           tag: str = "hierarchical") -> CollectiveProcess:
    """Hierarchical allreduce of ``max(sizes)`` bytes per rank over the topology's servers."""
    r, s = check_args(net, ranks, sizes, "hierarchical_allreduce")
    grid = server_groups(net, r)
    n_srv, g = grid.shape
    m = float(s.max())
    # intra-server rings: rank grid[s, j] -> grid[s, j+1], all servers in one batch
    intra_src = grid.ravel()
    intra_dst = np.roll(grid, -1, axis=1).ravel()
    if g > 1:
        yield from ring_steps(net, intra_src, intra_dst, lambda _k: m / g, g - 1, f"{tag}:intra_rs")
    if n_srv > 1:
        # g inter-server rings (one per local index): grid[s, j] -> grid[s+1, j]
        inter_dst = np.roll(grid, -1, axis=0).ravel()
        shard = m / g / n_srv
        yield from ring_steps(net, intra_src, inter_dst, lambda _k: shard, 2 * (n_srv - 1),
                              f"{tag}:inter")
    if g > 1:
        yield from ring_steps(net, intra_src, intra_dst, lambda _k: m / g, g - 1, f"{tag}:intra_ag")
