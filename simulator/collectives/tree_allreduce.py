"""Binary-tree allreduce: reduce up a tree, then broadcast down it; optionally two trees.

The tree is heap-ordered over ``ranks`` (position i has children 2i+1 and 2i+2).
Unpipelined, as in the closed form of reference/collectives.md: a parent receives its
children's buffers one after the other (each as soon as that child's subtree is reduced
and the previous child is received), then forwards; in the broadcast a parent sends to
its children one after the other. With ``double=True`` (NCCL's double binary tree) the
buffer is split in halves reduced over two trees at once, the second tree over the
ranks in reverse order so that the first tree's leaves are its inner nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import simpy

from gradwire.simulator import analytic
from gradwire.simulator.collectives.base import CollectiveProcess, check_args, collective
from gradwire.simulator.network import Network


def _one_tree(net: Network, order: np.ndarray, m: float, tag: str) -> CollectiveProcess:
    env = net.env
    p = len(order)
    reduced = [env.event() for _ in range(p)]
    received = [env.event() for _ in range(p)]

    def children(i: int) -> list[int]:
        return [c for c in (2 * i + 1, 2 * i + 2) if c < p]

    def node(i: int) -> CollectiveProcess:
        for c in children(i):
            yield reduced[c]
            yield net.transfer(int(order[c]), int(order[i]), m, f"{tag}:reduce")
        reduced[i].succeed()
        if i == 0:
            received[0].succeed()
        yield received[i]
        for c in children(i):
            yield net.transfer(int(order[i]), int(order[c]), m, f"{tag}:bcast")
            received[c].succeed()

    procs = [env.process(node(i)) for i in range(p)]
    yield simpy.AllOf(env, procs)


@collective("tree_allreduce", carries="sum", closed_form=analytic.cf_tree_allreduce)
def tree_allreduce(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                   double: bool = False, tag: str = "tree_allreduce") -> CollectiveProcess:
    """Tree allreduce of ``max(sizes)`` bytes (binary tree, or two trees if ``double``)."""
    r, s = check_args(net, ranks, sizes, "tree_allreduce")
    if len(r) == 1:
        return
    m = float(s.max())
    if not double:
        yield from _one_tree(net, r, m, tag)
        return
    env = net.env
    a = env.process(_one_tree(net, r, m / 2, f"{tag}:t0"))
    b = env.process(_one_tree(net, r[::-1].copy(), m / 2, f"{tag}:t1"))
    yield simpy.AllOf(env, [a, b])
