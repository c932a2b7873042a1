"""Quantized reduce-scatter through a hierarchical all-to-all (ZeRO++'s qgZ).

Wang et al. 2023 ("ZeRO++: Extremely Efficient Collective Communication for Giant Model
Training", §4.3) replace the ring reduce-scatter of quantized gradients, which would
decode, add and re-encode at every one of its p-1 hops, by two all-to-alls: every rank
encodes its whole gradient buffer once; **within each server** of g GPUs it sends the 1/g
slice that each server peer owns (one all-to-all over the fast links); each rank decodes the
g slices it received, adds them and re-encodes the partial sum (1/g of the buffer); then
**across the n servers**, the ranks with the same local index exchange the 1/p slices of
that partial sum (one all-to-all per local index, each rank's own NIC route), and each rank
decodes and adds the n slices it receives: it ends with its 1/p shard of the sum, in full
precision. Every element is quantized once per level it crosses: twice when there are both
several servers and several GPUs per server, once otherwise
(:func:`quantizations`). On one server (n = 1) or without servers (g = 1: a flat
all-to-all over every rank) there is one level.

``sizes[i]`` is the compressed size of rank i's whole buffer (fixed-width payloads: a 1/g
slice is ``sizes[i]/g`` bytes, the re-encoded partial sum as well). ``decode_s`` and
``encode_s`` are the codec's times for one WHOLE buffer (decode including the add into the
float32 sum); the per-level work is asked for through ``work(kind, seconds)``: after the
intra-server all-to-all ``decode_s`` (g slices of 1/g) and ``encode_s / g``; after the
inter-server one ``decode_s / g`` (n slices of 1/p). The first, whole-buffer encode is the
caller's (it comes before the exchange). Bytes each rank sends: :func:`bytes_per_rank`.

This delivers a shard, not the whole gradient, so it is a building block of sharded data
parallelism (:mod:`gradwire.simulator.sharded`), not an exchange a DDP bucket can take.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradwire.errors import ConfigError
from gradwire.simulator.collectives.base import (
    CollectiveProcess,
    WorkFn,
    check_args,
    check_seconds,
    collective,
    default_work,
)
from gradwire.simulator.network import Network
from gradwire.simulator.topology import Topology


def rank_grid(topology: Topology, ranks: np.ndarray, group: int = 0) -> np.ndarray:
    """``ranks`` as an (n, g) array: n groups of g ranks in the order of ``ranks``.

    ``group`` > 0 cuts consecutive ranks into groups of that size; 0 takes the topology's
    servers (every rank its own group of one when it has none)."""
    p = len(ranks)
    if group > 0:
        if p % group:
            raise ConfigError(f"{p} ranks do not split into groups of {group}; choose a divisor of {p}")
        return ranks.reshape(p // group, group)
    servers = topology.servers
    if servers is None:
        return ranks.reshape(1, p) if p else ranks.reshape(0, 0)
    where = {r: s for s, members in enumerate(servers) for r in members}
    groups: dict[int, list[int]] = {}
    for r in ranks.tolist():
        groups.setdefault(where[r], []).append(r)
    if len({len(v) for v in groups.values()}) != 1:
        raise ConfigError("a hierarchical all-to-all needs the same number of ranks on every server, got "
                          f"{sorted(len(v) for v in groups.values())}")
    return np.array(list(groups.values()), dtype=np.int64)


def quantizations(g: int, n: int) -> int:
    """How many times each element is encoded: once, and once more after the intra-server
    sum when that partial sum still has servers to cross."""
    return 2 if g > 1 and n > 1 else 1


def bytes_per_rank(nbytes: float, g: int, n: int) -> float:
    """Bytes one rank sends for a whole compressed buffer of ``nbytes``: ``(g-1)/g`` of it
    inside its server, then ``(n-1)/n`` of its re-encoded ``1/g`` across the servers."""
    return nbytes * (g - 1) / g + nbytes / g * (n - 1) / n


def _alltoall_batch(grid: np.ndarray, chunk: np.ndarray, shifts: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row of ``grid`` runs an all-to-all: ``grid[s, i]`` sends ``chunk[s, i]`` bytes
    to each other member ``grid[s, j]`` of its row; as (src, dst, bytes) of one batch.

    ``shifts`` k > 0 with fewer than the m - 1 peers of a row: the row's all-to-all as k
    evenly spaced shift permutations (member i to member i + d mod m), each carrying
    ``(m - 1) / k`` of a peer's chunk. Every rank sends and receives the same bytes through
    k flows instead of m - 1, so where a rank's own links are the bottleneck (a NIC per GPU
    on a non-blocking fabric) the time is the same (tested), at k/(m-1) of the flows."""
    _rows, m = grid.shape
    if 0 < shifts < m - 1:
        d = np.unique(np.round(np.linspace(1, m - 1, shifts)).astype(np.int64))
        i = np.repeat(np.arange(m), len(d))
        j = (i + np.tile(d, m)) % m
        scale = (m - 1) / len(d)
        return grid[:, i].ravel(), grid[:, j].ravel(), (chunk[:, i] * scale).ravel()
    a, b = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    off = a != b
    ii, jj = a[off], b[off]
    src = grid[:, ii].ravel()
    dst = grid[:, jj].ravel()
    size = chunk[:, ii].ravel()
    return src, dst, size


def _closed_form(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float, opts: dict) -> float:
    from gradwire.simulator import analytic

    grid = rank_grid(topo, np.asarray(rk, dtype=np.int64), int(opts.get("group", 0)))
    n, g = grid.shape
    m = max(sz)
    dec, enc = float(opts.get("decode_s", 0.0)), float(opts.get("encode_s", 0.0))
    if n == 1 or g == 1:  # one level: one all-to-all over every rank, then p slices decoded
        flat = grid.ravel().tolist()
        pairs = [(x, y) for x in flat for y in flat if x != y]
        a, b = analytic._alpha_beta(topo, pairs, ov, eff)
        return analytic.alltoall_time(len(flat), m, a, b) + (dec if pairs else 0.0)
    intra = [(int(x), int(y)) for row in grid for x in row for y in row if x != y]
    inter = [(int(x), int(y)) for col in grid.T for x in col for y in col if x != y]
    a1, b1 = analytic._alpha_beta(topo, intra, ov, eff)
    a2, b2 = analytic._alpha_beta(topo, inter, ov, eff)
    return (analytic.alltoall_time(g, m, a1, b1) + dec + enc / g
            + analytic.alltoall_time(n, m / g, a2, b2) + dec / g)


@collective("hierarchical_alltoall", carries="none", delivers="chunks", requantizes=True,
            closed_form=_closed_form)
def hierarchical_alltoall(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                          group: int = 0, decode_s: float = 0.0, encode_s: float = 0.0,
                          hop_decode_s: float = 0.0, work: WorkFn | None = None, shifts: int = 0,
                          tag: str = "hierarchical_alltoall") -> CollectiveProcess:
    """Quantized reduce-scatter of ``sizes[i]`` compressed bytes per rank by two levels of
    all-to-all (see the module docstring); ``group`` > 0 sets the ranks per level-one group
    (default: the topology's servers). ``hop_decode_s`` is accepted for the requantizing
    collectives' uniform signature and ignored: this one's work is ``decode_s``/``encode_s``.
    ``shifts`` > 0 runs each all-to-all as that many shift permutations (see
    :func:`_alltoall_batch`); 0, every pair."""
    r, s = check_args(net, ranks, sizes, "hierarchical_alltoall")
    dec = check_seconds(decode_s, "hierarchical_alltoall decode_s")
    enc = check_seconds(encode_s, "hierarchical_alltoall encode_s")
    check_seconds(hop_decode_s, "hierarchical_alltoall hop_decode_s")
    if isinstance(group, bool) or not isinstance(group, int) or group < 0:
        raise ConfigError(f"hierarchical_alltoall group must be an integer >= 0, got {group!r}")
    run = work or default_work(net.env)
    grid = rank_grid(net.topology, r, group)
    n, g = grid.shape
    if len(r) == 1:
        return
    by_rank = dict(zip(r.tolist(), s.tolist(), strict=True))
    full = np.vectorize(by_rank.__getitem__, otypes=[float])(grid)
    if n == 1 or g == 1:
        flat = grid.reshape(1, -1)
        src, dst, size = _alltoall_batch(flat, full.reshape(1, -1) / flat.shape[1], shifts)
        yield net.transfers(src, dst, size, f"{tag}:flat")
        if dec > 0:
            yield run("decode", dec)
        return
    src, dst, size = _alltoall_batch(grid, full / g, shifts)
    yield net.transfers(src, dst, size, f"{tag}:intra")
    if dec > 0:
        yield run("decode", dec)
    if enc > 0:
        yield run("encode", enc / g)
    # the re-encoded partial sum: 1/g of the buffer, 1/p of it to each server's peer
    part = full / g
    src, dst, size = _alltoall_batch(grid.T.copy(), part.T / n, shifts)
    yield net.transfers(src, dst, size, f"{tag}:inter")
    if dec > 0:
        yield run("decode", dec / g)
