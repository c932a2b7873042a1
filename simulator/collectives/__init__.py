"""Collectives as schedules of transfers, one small file each, registered by name.

Every collective is a generator function ``fn(net, ranks, sizes, **opts)`` (a SimPy
process body, see :mod:`.base`); look one up with ``COLLECTIVES.get(name)`` and run it as
``env.process(fn(net, ranks, sizes, **opts))``, or run one alone on a fresh network with
:func:`run_collective`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from gradwire.errors import ConfigError
from gradwire.results import LinkUse
from gradwire.simulator.collectives import (  # noqa: F401  (registration side effects)
    alltoall,
    broadcast,
    compressed_allreduce,
    gloo_ring,
    halving_doubling,
    hierarchical_allreduce,
    hierarchical_alltoall,
    nccl_allreduce,
    parameter_server,
    ring_allgather,
    ring_allreduce,
    ring_reduce_scatter,
    tree_allreduce,
)
from gradwire.simulator.collectives.base import COLLECTIVES, CollectiveFn, CollectiveProcess
from gradwire.simulator.network import Network, TransferRecords
from gradwire.simulator.topology import Topology


@dataclass(frozen=True)
class CollectiveRun:
    """One collective simulated alone: its duration (seconds), transfers and link load.

    ``records`` (every transfer) and ``links`` (per-link load over ``time_s``) are built
    on first access from ``network``, the engine that ran it.
    """

    name: str
    time_s: float
    n_transfers: int
    network: Network

    @property
    def records(self) -> TransferRecords:
        return self.network.records

    @property
    def links(self) -> list[LinkUse]:
        return self.network.link_usage(self.time_s) if self.time_s > 0 else []


def run_collective(topology: Topology, name: str, sizes: Sequence[float] | float, *,
                   ranks: Sequence[int] | None = None, per_message_overhead_s: float = 0.0,
                   efficiency: float = 1.0, record: bool = True, **opts: Any) -> CollectiveRun:
    """Simulate collective ``name`` alone on ``topology`` from time 0.

    ``sizes`` is one byte count per rank (or one number for all); ``ranks`` defaults to
    every rank of the topology. Unknown options are a :class:`ConfigError`.
    """
    fn = COLLECTIVES.get(name)
    rk = list(range(topology.num_ranks)) if ranks is None else list(ranks)
    sz = np.broadcast_to(np.asarray(sizes, dtype=float), (len(rk),)) if np.ndim(sizes) == 0 else np.asarray(sizes, dtype=float)
    env = simpy.Environment()
    net = Network(env, topology, per_message_overhead_s=per_message_overhead_s,
                  efficiency=efficiency, record=record)
    try:
        gen = fn(net, rk, sz, **opts)
    except TypeError as exc:
        raise ConfigError(f"collective {name!r}: {exc}") from None
    proc = env.process(gen)
    env.run(until=proc)
    return CollectiveRun(name, float(env.now), net.n_transfers, net)


__all__ = ["COLLECTIVES", "CollectiveFn", "CollectiveProcess", "CollectiveRun", "run_collective"]
