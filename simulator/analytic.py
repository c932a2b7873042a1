"""Closed-form alpha-beta costs of the collectives: the analytical backend and test oracle.

Each function gives the time in seconds of one collective on a contention-free network
(every rank its own full-duplex link, or dedicated ring/tree links) from ``alpha_s``, the
cost of one message step (route propagation latency plus per-message software overhead),
and ``bandwidth_Bps``, the payload bytes per second of the bottleneck link on a route.
Formulas follow reference/collectives.md (Thakur, Rabenseifner and Gropp 2005; Patarasuk
and Yuan 2009). :func:`closed_form` reads alpha and B off a topology and dispatches by
collective name, so a caller can swap the event-driven engine for these formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradwire.errors import ConfigError
from gradwire.simulator.topology import Topology


def ring_allreduce_time(p: int, nbytes: float, alpha_s: float, bandwidth_Bps: float) -> float:
    """Ring allreduce: ``2(p-1)·alpha + 2(p-1)/p · M/B``."""
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * alpha_s + 2 * (p - 1) / p * nbytes / bandwidth_Bps


def ring_reduce_scatter_time(p: int, nbytes: float, alpha_s: float, bandwidth_Bps: float) -> float:
    """Ring reduce-scatter: ``(p-1)·alpha + (p-1)/p · M/B``."""
    if p <= 1:
        return 0.0
    return (p - 1) * alpha_s + (p - 1) / p * nbytes / bandwidth_Bps


def ring_allgather_time(sizes: Sequence[float], alpha_s: float, bandwidth_Bps: float) -> float:
    """Lock-step ring allgather of per-rank payloads ``m_i``: ``(p-1)·(alpha + max m_i / B)``.

    Every step forwards every payload but one, so each step lasts as long as the largest.
    """
    p = len(sizes)
    if p <= 1:
        return 0.0
    return (p - 1) * (alpha_s + max(sizes) / bandwidth_Bps)


def alltoall_time(p: int, nbytes: float, alpha_s: float, bandwidth_Bps: float) -> float:
    """All-to-all of M bytes per rank (M/p to each peer) through a non-blocking switch:
    ``alpha + (p-1)/p · M/B``, every rank's link carrying p-1 chunks at once."""
    if p <= 1:
        return 0.0
    return alpha_s + (p - 1) / p * nbytes / bandwidth_Bps


def halving_doubling_time(p: int, nbytes: float, alpha_s: float, bandwidth_Bps: float) -> float:
    """Recursive halving + doubling: ``2·log2(p')·alpha + 2(p'-1)/p' · M/B`` with p' the
    largest power of two <= p, plus ``2·(alpha + M/B)`` to fold the other p - p' ranks."""
    if p <= 1:
        return 0.0
    q = 1 << (p.bit_length() - 1)
    t = 2 * math.log2(q) * alpha_s + 2 * (q - 1) / q * nbytes / bandwidth_Bps
    if q != p:
        t += 2 * (alpha_s + nbytes / bandwidth_Bps)
    return t


def recursive_doubling_time(p: int, nbytes: float, alpha_s: float, bandwidth_Bps: float) -> float:
    """Recursive-doubling allreduce (p a power of two): ``log2(p)·(alpha + M/B)``."""
    return math.log2(p) * (alpha_s + nbytes / bandwidth_Bps) if p > 1 else 0.0


def broadcast_time(p: int, nbytes: float, alpha_s: float, bandwidth_Bps: float) -> float:
    """Binomial-tree broadcast: ``ceil(log2 p)·(alpha + M/B)``."""
    if p <= 1:
        return 0.0
    return math.ceil(math.log2(p)) * (alpha_s + nbytes / bandwidth_Bps)


def tree_allreduce_time(p: int, nbytes: float, alpha_s: float, bandwidth_Bps: float) -> float:
    """Unpipelined binary-tree allreduce on the heap-ordered tree (children 2i+1, 2i+2).

    Reduce: a node has its subtree reduced at ``R(i)``, where for its children in order
    ``t <- max(t, R(c)) + (alpha + M/B)`` (one child after the other). Broadcast: the k-th
    child of a node holding the result at ``T`` receives it at ``T + k·(alpha + M/B)``.
    The time is the last node's receipt (``2·ceil(log2(p+1)-1)`` levels of one or two
    step costs each, as in reference/collectives.md, derived here for the exact tree).
    """
    if p <= 1:
        return 0.0
    c = alpha_s + nbytes / bandwidth_Bps
    reduced = [0.0] * p
    for i in range(p - 1, -1, -1):
        t = 0.0
        for ch in (2 * i + 1, 2 * i + 2):
            if ch < p:
                t = max(t, reduced[ch]) + c
        reduced[i] = t
    got = [0.0] * p
    got[0] = reduced[0]
    for i in range(p):
        t = max(got[i], reduced[i])
        for ch in (2 * i + 1, 2 * i + 2):
            if ch < p:
                t += c
                got[ch] = t
    return max(got)


def parameter_server_time(p: int, nbytes: float, alpha_s: float, bandwidth_Bps: float, *,
                          num_servers: int = 1, colocated: bool = True, pull: bool = True) -> float:
    """Push (and pull) of M bytes from each of p workers through S sharded servers.

    A server's link carries one shard from every worker: ``n_in·(M/S)`` bytes with n_in = p
    (dedicated servers) or p - 1 (colocated), while a worker sends M in all; the busier
    side bounds each phase: ``alpha + max(n_in/S, 1)·M/B`` (colocated: ``max((p-1)/S,
    (S-1)/S)`` for a worker that is also a server). One dedicated server gives the incast
    ``alpha + p·M/B``; S = p colocated gives ``alpha + (p-1)/p · M/B``.
    """
    s = num_servers
    if colocated:
        load = max((p - 1) / s, 1.0 if p > s else (s - 1) / s)
    else:
        load = max(p / s, 1.0)
    if p == 1 and colocated:
        return 0.0
    one = alpha_s + load * nbytes / bandwidth_Bps
    return 2 * one if pull else one


def hierarchical_allreduce_time(gpus_per_server: int, num_servers: int, nbytes: float,
                                intra_alpha_s: float, intra_bandwidth_Bps: float,
                                inter_alpha_s: float, inter_bandwidth_Bps: float) -> float:
    """Intra ring reduce-scatter + g inter-server ring allreduces of M/g + intra allgather:
    ``2(g-1)·(alpha_i + M/(g·B_i)) + 2(S-1)·(alpha_n + M/(S·B_n))``, B_n the server's
    network bandwidth shared by its g concurrent inter-server rings."""
    g, s = gpus_per_server, num_servers
    t = 0.0
    if g > 1:
        t += 2 * (g - 1) * (intra_alpha_s + nbytes / (g * intra_bandwidth_Bps))
    if s > 1:
        t += 2 * (s - 1) * (inter_alpha_s + nbytes / (s * inter_bandwidth_Bps))
    return t


def compressed_allreduce_time(sizes: Sequence[float], alpha_s: float, bandwidth_Bps: float,
                              hop_s: float = 0.0) -> float:
    """Compressed ring reduce-scatter + allgather with codec time ``hop_s`` (decode + re-encode
    of one chunk) per reduce-scatter hop: ``(p-1)·(alpha + m/(p·B) + hop_s) +
    (p-1)·(alpha + m/(p·B))``, m = max size."""
    p = len(sizes)
    if p <= 1:
        return 0.0
    step = alpha_s + max(sizes) / p / bandwidth_Bps
    return (p - 1) * (step + hop_s) + (p - 1) * step


# ---------------------------------------------------------------------- from a topology
def _alpha_beta(topo: Topology, pairs: Sequence[tuple[int, int]], overhead_s: float,
                efficiency: float) -> tuple[float, float]:
    """Worst alpha and bottleneck bandwidth over the routes of ``pairs``."""
    if not pairs:
        return overhead_s, math.inf
    alpha = max(topo.route_latency_s(a, b) for a, b in pairs) + overhead_s
    bw = min(topo.route_bandwidth_Bps(a, b) for a, b in pairs) * efficiency
    return alpha, bw


Opts = dict[str, Any]


def _ring(rk: Sequence[int]) -> list[tuple[int, int]]:
    p = len(rk)
    return [(rk[i], rk[(i + 1) % p]) for i in range(p)] if p > 1 else []


def cf_ring_allreduce(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: Opts) -> float:
    a, b = _alpha_beta(topo, _ring(rk), ov, eff)
    return ring_allreduce_time(len(rk), max(sz), a, b)


def cf_ring_reduce_scatter(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: Opts) -> float:
    a, b = _alpha_beta(topo, _ring(rk), ov, eff)
    return ring_reduce_scatter_time(len(rk), max(sz), a, b)


def cf_ring_allgather(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: Opts) -> float:
    a, b = _alpha_beta(topo, _ring(rk), ov, eff)
    return ring_allgather_time(sz, a, b)


def cf_compressed_allreduce(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float,
                            opts: Opts) -> float:
    a, b = _alpha_beta(topo, _ring(rk), ov, eff)
    return compressed_allreduce_time(sz, a, b, opts.get("hop_decode_s", 0.0) + opts.get("hop_encode_s", 0.0))


def cf_halving_doubling(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: Opts) -> float:
    p = len(rk)
    pairs = [(rk[i], rk[j]) for i in range(p) for j in range(p) if i != j and bin(i ^ j).count("1") == 1]
    a, b = _alpha_beta(topo, pairs, ov, eff)
    return halving_doubling_time(p, max(sz), a, b)


def _tree_pairs(rk: list[int]) -> list[tuple[int, int]]:
    p = len(rk)
    return [(rk[i], rk[j]) for i in range(p) for j in (2 * i + 1, 2 * i + 2) if j < p]


def cf_tree_allreduce(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: Opts) -> float:
    pairs = _tree_pairs(rk)
    a, b = _alpha_beta(topo, pairs + [(y, x) for x, y in pairs], ov, eff)
    m = max(sz)
    return tree_allreduce_time(len(rk), m / 2 if opts.get("double", False) else m, a, b)


def cf_broadcast(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: Opts) -> float:
    root = int(opts.get("root", 0))
    pairs = [(rk[root], r) for r in rk if r != rk[root]]
    a, b = _alpha_beta(topo, pairs + [(y, x) for x, y in pairs], ov, eff)
    return broadcast_time(len(rk), sz[root], a, b)


def cf_parameter_server(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: Opts) -> float:
    servers = opts.get("servers")
    s = len(servers) if servers is not None else int(opts.get("num_servers", 1))
    srv = list(servers) if servers is not None else rk[:s]
    pairs = [(w, x) for w in rk for x in srv if w != x]
    a, b = _alpha_beta(topo, pairs, ov, eff)
    return parameter_server_time(len(rk), max(sz), a, b, num_servers=s, colocated=servers is None,
                                 pull=bool(opts.get("pull", True)))


def cf_hierarchical_allreduce(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float,
                              opts: Opts) -> float:
    if topo.servers is None:
        raise ConfigError(f"hierarchical_allreduce needs a topology with servers; {topo.name!r} has none")
    groups = [[r for r in srv if r in set(rk)] for srv in topo.servers]
    groups = [grp for grp in groups if grp]
    g, s = len(groups[0]), len(groups)
    intra = [(grp[i], grp[(i + 1) % g]) for grp in groups for i in range(g)] if g > 1 else []
    inter = [(groups[i][j], groups[(i + 1) % s][j]) for i in range(s) for j in range(g)] if s > 1 else []
    ai, bi = _alpha_beta(topo, intra, ov, eff)
    an, bn = _alpha_beta(topo, inter, ov, eff)
    # the g inter-server rings of a server share its NICs: per-server bandwidth
    nics = _server_nic_bandwidth(topo, groups[0]) * eff if s > 1 else math.inf
    return hierarchical_allreduce_time(g, s, max(sz), ai, bi, an, min(nics, bn * g))


def cf_alltoall(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: Opts) -> float:
    pairs = [(x, y) for x in rk for y in rk if x != y]
    a, b = _alpha_beta(topo, pairs, ov, eff)
    return alltoall_time(len(rk), max(sz), a, b)


def closed_form(topology: Topology, name: str, sizes: Sequence[float] | float, *,
                ranks: Sequence[int] | None = None, per_message_overhead_s: float = 0.0,
                efficiency: float = 1.0, **opts: Any) -> float:
    """The closed-form time (seconds) of collective ``name`` on ``topology``: the form the
    collective declares (``CollectiveInfo.closed_form``).

    Alpha is the largest route latency among the pairs the collective uses plus the
    per-message overhead; B the smallest bottleneck bandwidth among them times
    ``efficiency``. Exact on contention-free topologies; elsewhere a lower bound that
    ignores link sharing (the event-driven engine is the reference then).
    """
    from gradwire.simulator.collectives.base import collective_info

    info = collective_info(name)
    if info.closed_form is None:
        raise ConfigError(f"no closed form for collective {name!r}: {info.no_closed_form_why}")
    rk = list(range(topology.num_ranks)) if ranks is None else [int(r) for r in ranks]
    sz = [float(x) for x in np.broadcast_to(np.asarray(sizes, dtype=float), (len(rk),))]
    return float(info.closed_form(topology, rk, sz, per_message_overhead_s, efficiency, dict(opts)))


def _server_nic_bandwidth(topo: Topology, members: Sequence[int]) -> float:
    """Total bandwidth of the links from a server's switch to its NICs, bytes/s."""
    g = topo.graph
    gpu = topo.node_of(members[0])
    sw = next(v for v in g.successors(gpu) if g.nodes[v]["kind"] == "switch")
    total = sum(d["bandwidth_Bps"] for _, v, d in g.out_edges(sw, data=True) if g.nodes[v]["kind"] == "nic")
    return float(total) if total > 0 else topo.route_bandwidth_Bps(members[0], members[0])
