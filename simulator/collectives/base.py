"""What every collective shares: the registry, the uniform signature and argument checks.

A collective is a generator function (a SimPy process body) with one signature,
``fn(net, ranks, sizes, **opts)``: ``ranks`` are the participating ranks of ``net``'s
topology in collective order, ``sizes[i]`` the bytes rank ``ranks[i]`` contributes
(allreduce: the buffer, equal on every rank; allgather: each rank's own payload, which may
differ). It yields the network's transfer events (and timeouts for local work) in order,
so the same schedule runs alone, inside a training-iteration timeline, or concurrently
with other collectives on one :class:`~gradwire.simulator.network.Network`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import simpy

from gradwire.errors import ConfigError
from gradwire.registry import Registry
from gradwire.simulator.network import Network

CollectiveProcess = Generator[simpy.Event, Any, None]
CollectiveFn = Callable[..., CollectiveProcess]

COLLECTIVES: Registry[CollectiveProcess] = Registry("collective")
# Collectives that hand every rank all p payloads (allgathers): after one of them a rank
# decodes p payloads, after a summing collective only one. Each such collective adds its
# name in its own file.
GATHERS_PAYLOADS: set[str] = set()


def check_args(net: Network, ranks: Sequence[int], sizes: Sequence[float] | np.ndarray,
               name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``ranks`` and ``sizes``; return them as int64 and float64 arrays."""
    r = np.asarray(ranks, dtype=np.int64).ravel()
    s = np.asarray(sizes, dtype=float).ravel()
    if len(r) == 0:
        raise ConfigError(f"{name}: ranks is empty; give at least one rank")
    if len(s) != len(r):
        raise ConfigError(f"{name}: sizes has {len(s)} entries but there are {len(r)} ranks; give one size per rank")
    if not np.isfinite(s).all() or (s < 0).any():
        raise ConfigError(f"{name}: sizes must be finite byte counts >= 0")
    p = net.topology.num_ranks
    if r.min() < 0 or r.max() >= p:
        raise ConfigError(f"{name}: ranks must be in 0..{p - 1} (topology {net.topology.name!r})")
    if len(np.unique(r)) != len(r):
        raise ConfigError(f"{name}: ranks must be distinct")
    return r, s


def check_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def ring_steps(net: Network, src: np.ndarray, dst: np.ndarray, chunk: Callable[[int], np.ndarray],
               steps: int, tag: str, hop_s: float = 0.0) -> CollectiveProcess:
    """``steps`` lock-step ring steps: all ``src[i] -> dst[i]`` at once, sizes ``chunk(step)``;
    ``hop_s`` seconds of local work follow each step (decode + sum + re-encode)."""
    for step in range(steps):
        yield net.transfers(src, dst, chunk(step), f"{tag}{step}")
        if hop_s > 0:
            yield net.env.timeout(hop_s)
