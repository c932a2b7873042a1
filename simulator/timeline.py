"""One data-parallel training iteration on every rank, as a SimPy timeline.

Forward; backward producing each DDP bucket at its profiled ready time; per bucket an
encode on the rank's codec stream, the exchange (a collective over the simulated
network; buckets' collectives run one after another, as on one communication stream),
the decode(s) and sum; then the optimizer step once backward and every decode are done.
With ``overlap`` (the default; the QSGD paper's double buffering is the same idea) a
bucket is encoded and sent as soon as it is ready, under the rest of backward; without it
every bucket waits for backward to end and buckets go strictly one after another, so the
iteration is ``compute + sum(encode + collective + decode)``.

Ranks with the same compute speed behave identically, so the codec streams are simulated
once per speed class (stragglers and jitter make more classes); only the network sees
every rank. Plain numbers in, plain numbers out: no torch here.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from gradwire.errors import ConfigError
from gradwire.results import LinkUse, Segment
from gradwire.simulator.collectives import COLLECTIVES
from gradwire.simulator.collectives.base import GATHERS_PAYLOADS
from gradwire.simulator.network import Network
from gradwire.simulator.topology import Topology


def decodes_per_bucket(collective: str, p: int) -> int:
    """Payloads a rank decodes after a bucket's collective: an allgather hands every rank
    all p payloads; a summing collective hands back one (already summed) value."""
    return p if collective in GATHERS_PAYLOADS else 1




@dataclass(frozen=True)
class BucketCost:
    """What one DDP bucket costs: sizes in elements and bytes, times in seconds."""

    numel: int  # gradient elements in the bucket
    ready_s: float  # when its last gradient is ready, seconds after backward starts
    payload_bytes: tuple[float, ...]  # per rank (fewer entries than ranks: reused cyclically)
    encode_s: float  # encode the bucket on one rank
    decode_s: float  # decode ONE payload of this bucket

    def bytes_for(self, p: int) -> list[float]:
        if not self.payload_bytes:
            raise ConfigError("BucketCost.payload_bytes must hold at least one size")
        n = len(self.payload_bytes)
        return [float(self.payload_bytes[r % n]) for r in range(p)]


@dataclass(frozen=True)
class IterationSpec:
    forward_s: float
    backward_s: float
    optimizer_s: float
    buckets: tuple[BucketCost, ...]
    collective: str
    collective_opts: Mapping[str, Any] = field(default_factory=dict)
    overlap: bool = True


@dataclass
class IterationResult:
    """Times of the critical rank (the last to finish; the slowest on ties).

    Additive breakdown: ``iteration_s == compute_s + encode_s + decode_s + exposed_comm_s``
    where encode/decode are the codec time *exposed* on the critical path and
    ``exposed_comm_s`` also holds waiting for the other ranks (synchronization).
    ``comm_s`` is the time any collective was in flight; ``hidden_comm_s`` the part of it
    overlapped with compute or codec work. ``encode_total_s``/``decode_total_s`` are the
    critical rank's whole codec time.
    """

    iteration_s: float
    compute_s: float
    forward_s: float
    backward_s: float
    optimizer_s: float
    encode_s: float
    decode_s: float
    comm_s: float
    exposed_comm_s: float
    hidden_comm_s: float
    encode_total_s: float
    decode_total_s: float
    bytes_per_rank: float
    n_transfers: int
    critical_rank: int
    segments: list[Segment] = field(default_factory=list)
    links: list[LinkUse] = field(default_factory=list)


def _compute_factors(p: int, stragglers: Mapping[int, float] | None, jitter: float, seed: int) -> np.ndarray:
    factors = np.ones(p)
    if jitter > 0:
        rng = np.random.default_rng(seed)
        factors *= np.clip(1.0 + jitter * rng.standard_normal(p), 0.1, None)
    for rank, slow in (stragglers or {}).items():
        if not 0 <= rank < p:
            raise ConfigError(f"straggler rank {rank} is outside 0..{p - 1}")
        if slow < 1:
            raise ConfigError(f"straggler slowdown must be >= 1, got {slow} for rank {rank}")
        factors[rank] *= slow
    return factors


def _measure(intervals: list[tuple[float, float]]) -> float:
    """Total length of a union of intervals."""
    total, end = 0.0, -np.inf
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _covered(points: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    """Boolean mask: which of ``points`` (segment midpoints) fall inside any interval."""
    mask = np.zeros(points.shape, dtype=bool)
    for a, b in intervals:
        mask |= (points > a) & (points < b)
    return mask


def simulate_iteration(
    spec: IterationSpec,
    topology: Topology,
    *,
    per_message_overhead_s: float = 0.0,
    efficiency: float = 1.0,
    stragglers: Mapping[int, float] | None = None,
    jitter: float = 0.0,
    seed: int = 0,
    trace_ranks: int = 4,
    trace_transfers: int = 4000,
) -> IterationResult:
    """Simulate one iteration of ``spec`` on ``topology``; see :class:`IterationResult`."""
    for name in ("forward_s", "backward_s", "optimizer_s"):
        if getattr(spec, name) < 0:
            raise ConfigError(f"IterationSpec.{name} must be >= 0, got {getattr(spec, name)}")
    p = topology.num_ranks
    coll = COLLECTIVES.get(spec.collective)
    # a collective taking ``hop_s`` decodes, sums and re-encodes at every hop: give it the
    # codec time of one 1/p chunk
    per_hop = "hop_s" in inspect.signature(coll).parameters
    factors = _compute_factors(p, stragglers, jitter, seed)
    classes, rank_class = np.unique(factors, return_inverse=True)
    reps = [int(np.flatnonzero(rank_class == c)[0]) for c in range(len(classes))]

    env = simpy.Environment()
    net = Network(env, topology, per_message_overhead_s=per_message_overhead_s, efficiency=efficiency)
    ranks = list(range(p))
    nb = len(spec.buckets)
    ncls = len(classes)
    streams = [simpy.Resource(env, capacity=1) for _ in range(ncls)]
    enc_done = [[env.event() for _ in range(nb)] for _ in range(ncls)]
    dec_done = [[env.event() for _ in range(nb)] for _ in range(ncls)]
    comm_done = [env.event() for _ in range(nb)]
    enc_iv: list[list[tuple[float, float, int]]] = [[] for _ in range(ncls)]
    dec_iv: list[list[tuple[float, float, int]]] = [[] for _ in range(ncls)]
    comm_iv: list[tuple[float, float, int]] = []
    end_t = np.zeros(ncls)
    bwd_end = [(spec.forward_s + spec.backward_s) * f for f in classes]

    def encoder(c: int, b: int) -> Any:
        bucket = spec.buckets[b]
        if spec.overlap:
            ready = (spec.forward_s + bucket.ready_s) * classes[c]
            yield env.timeout(max(0.0, ready - env.now))
        elif b == 0:
            yield env.timeout(bwd_end[c])
        else:
            yield dec_done[c][b - 1]
        with streams[c].request() as req:
            yield req
            t0 = env.now
            yield env.timeout(bucket.encode_s)
            enc_iv[c].append((t0, env.now, b))
        enc_done[c][b].succeed()

    def communicator(b: int) -> Any:
        bucket = spec.buckets[b]
        waits = [enc_done[c][b] for c in range(ncls)]
        if b > 0:
            waits.append(comm_done[b - 1])
        yield simpy.AllOf(env, waits)
        opts = dict(spec.collective_opts)
        if per_hop:
            # decode + sum + re-encode of one 1/p chunk at every hop
            opts.setdefault("hop_s", (bucket.encode_s + bucket.decode_s) / p)
        t0 = env.now
        yield env.process(coll(net, ranks, bucket.bytes_for(p), **opts))
        comm_iv.append((t0, env.now, b))
        comm_done[b].succeed()

    def decoder(c: int, b: int) -> Any:
        bucket = spec.buckets[b]
        yield comm_done[b]
        n = decodes_per_bucket(spec.collective, p)
        with streams[c].request() as req:
            yield req
            t0 = env.now
            yield env.timeout(bucket.decode_s * n)
            dec_iv[c].append((t0, env.now, b))
        dec_done[c][b].succeed()

    def finisher(c: int) -> Any:
        yield simpy.AllOf(env, [env.timeout(bwd_end[c]), *dec_done[c]])
        yield env.timeout(spec.optimizer_s * classes[c])
        end_t[c] = env.now

    for b in range(nb):
        env.process(communicator(b))
        for c in range(ncls):
            env.process(encoder(c, b))
            env.process(decoder(c, b))
    for c in range(ncls):
        env.process(finisher(c))
    env.run()

    T = float(end_t.max())
    # critical class: the last to finish; among ties the slowest compute
    crit = int(max(range(ncls), key=lambda c: (round(float(end_t[c]), 12), float(classes[c]))))
    f = classes[crit]
    fwd, bwd, opt = spec.forward_s * f, spec.backward_s * f, spec.optimizer_s * f
    opt_start = end_t[crit] - opt
    compute_iv = [(0.0, fwd + bwd), (opt_start, float(end_t[crit]))]
    comm_pairs = [(a, b) for a, b, _ in comm_iv]
    enc_pairs = [(a, b) for a, b, _ in enc_iv[crit]]
    dec_pairs = [(a, b) for a, b, _ in dec_iv[crit]]

    # Attribute every instant of [0, T] on the critical rank: compute, else encode/decode
    # work, else communication in flight (or waiting for it).
    cuts = np.unique(np.array([0.0, T, *[x for iv in (compute_iv + comm_pairs + enc_pairs + dec_pairs) for x in iv]]))
    cuts = cuts[(cuts >= 0) & (cuts <= T)]
    lengths = np.diff(cuts)
    mids = (cuts[:-1] + cuts[1:]) / 2
    is_compute = _covered(mids, compute_iv)
    is_enc = _covered(mids, enc_pairs) & ~is_compute
    is_dec = _covered(mids, dec_pairs) & ~is_compute & ~is_enc
    rest = ~is_compute & ~is_enc & ~is_dec
    in_comm = _covered(mids, comm_pairs)
    compute_s = float(lengths[is_compute].sum())
    encode_x = float(lengths[is_enc].sum())
    decode_x = float(lengths[is_dec].sum())
    exposed = float(lengths[rest].sum())
    comm_s = _measure(comm_pairs)
    hidden = comm_s - float(lengths[rest & in_comm].sum())

    rec = net.records
    total_bytes = float(np.sum(rec.nbytes)) if len(rec) else 0.0
    segments = _segments(spec, classes, rank_class, reps, crit, enc_iv, dec_iv, comm_iv, end_t, net,
                         trace_ranks, trace_transfers)
    return IterationResult(
        iteration_s=T,
        compute_s=compute_s,
        forward_s=fwd,
        backward_s=bwd,
        optimizer_s=opt,
        encode_s=encode_x,
        decode_s=decode_x,
        comm_s=comm_s,
        exposed_comm_s=exposed,
        hidden_comm_s=max(0.0, hidden),
        encode_total_s=_measure(enc_pairs),
        decode_total_s=_measure(dec_pairs),
        bytes_per_rank=total_bytes / p,
        n_transfers=net.n_transfers,
        critical_rank=reps[crit],
        segments=segments,
        links=net.link_usage(T),
    )


def _segments(
    spec: IterationSpec,
    classes: np.ndarray,
    rank_class: np.ndarray,
    reps: Sequence[int],
    crit: int,
    enc_iv: Sequence[Sequence[tuple[float, float, int]]],
    dec_iv: Sequence[Sequence[tuple[float, float, int]]],
    comm_iv: Sequence[tuple[float, float, int]],
    end_t: np.ndarray,
    net: Network,
    trace_ranks: int,
    trace_transfers: int,
) -> list[Segment]:
    """Timeline segments of a few ranks (the critical one first) for the dashboard."""
    p = len(rank_class)
    shown: list[int] = [reps[crit]]
    for r in range(p):
        if len(shown) >= min(trace_ranks, p):
            break
        if r not in shown:
            shown.append(r)
    rec = net.records
    per_transfer = len(rec) <= trace_transfers
    segs: list[Segment] = []
    for r in shown:
        c = int(rank_class[r])
        f = classes[c]
        fb = spec.forward_s * f
        segs.append(Segment(r, "forward", 0.0, fb, "forward"))
        segs.append(Segment(r, "backward", fb, fb + spec.backward_s * f, "backward"))
        segs += [Segment(r, "encode", a, b, f"bucket {k}") for a, b, k in enc_iv[c]]
        segs += [Segment(r, "decode", a, b, f"bucket {k}") for a, b, k in dec_iv[c]]
        segs.append(Segment(r, "optimizer", float(end_t[c]) - spec.optimizer_s * f, float(end_t[c]), "optimizer"))
        if per_transfer and len(rec):
            mask = rec.src == r
            for s, e, d, tag in zip(rec.start_s[mask], rec.end_s[mask], rec.dst[mask], np.asarray(rec.tag, dtype=object)[mask], strict=True):
                segs.append(Segment(r, "comm", float(s), float(e), f"{tag} -> {int(d)}"))
        else:
            segs += [Segment(r, "comm", a, b, f"bucket {k} {spec.collective}") for a, b, k in comm_iv]
    return segs
