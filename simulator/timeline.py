"""One data-parallel training iteration on every rank, as a SimPy timeline.

Forward; backward producing each DDP bucket at its profiled ready time; per bucket the
codec's declared exchange: an encode on the rank's codec stream, then each round of the
exchange as a collective over the simulated network (rounds of all buckets run one after
another on one communication stream, in the order they are issued), with the codec's local
work between rounds (PowerSGD orthogonalizes P before sending Q), then the decode(s) -- as
many payloads as the last round's collective declares it hands a rank; then the optimizer
step once backward and every decode are done. With ``overlap`` (the default; the QSGD
paper's double buffering is the same idea) a bucket is encoded and sent as soon as it is
ready, under the rest of backward; without it every bucket waits for backward to end and
buckets go strictly one after another.

Where codec work runs is ``codec_overlap``: ``"shared"`` (the default) puts compute and
the codec stream on one device that serves them by processor sharing -- while both have
work each runs at half speed, so an encode overlapping backward stretches backward by the
encode's own length, as codec kernels sharing a GPU's SMs and memory bandwidth (or a CPU's
cores) with backward do; ``"free"`` runs codec work beside compute at full speed (a codec
offloaded to other hardware). A collective that re-quantizes at every hop asks for its
per-hop decode and re-encode through the same codec stream, so that work is codec time,
not communication.

Ranks with the same compute speed behave identically, so compute and codec streams are
simulated once per speed class (stragglers and jitter make more classes); only the
network sees every rank. Plain numbers in, plain numbers out: no torch here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import simpy

from gradwire.errors import ConfigError
from gradwire.results import LinkUse, Segment
from gradwire.simulator.collectives import COLLECTIVES
from gradwire.simulator.collectives.base import collective_info
from gradwire.simulator.network import Network
from gradwire.simulator.topology import Topology

CodecOverlap = Literal["shared", "free"]
CODEC_OVERLAPS: tuple[str, ...] = ("shared", "free")


@dataclass(frozen=True)
class Round:
    """One collective of a bucket's exchange after the first (PowerSGD's Q, say).

    ``payload_bytes`` per rank (reused cyclically); ``collective`` None means the
    iteration's collective; ``work_before_s`` the codec work every rank does after the
    previous round and before this one; ``options`` the collective's keyword options.
    """

    payload_bytes: tuple[float, ...]
    collective: str | None = None
    work_before_s: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def bytes_for(self, p: int) -> list[float]:
        if not self.payload_bytes:
            raise ConfigError("Round.payload_bytes must hold at least one size")
        n = len(self.payload_bytes)
        return [float(self.payload_bytes[r % n]) for r in range(p)]


@dataclass(frozen=True)
class BucketCost:
    """What one DDP bucket costs: sizes in elements and bytes, times in seconds.

    The exchange is ``rounds`` when given, else the one round ``payload_bytes`` through the
    iteration's collective. ``encode_s`` runs before the first round; ``decode_s`` is the
    time to decode ONE payload the last round hands a rank (its collective declares how
    many). ``hop_decode_s``/``hop_encode_s`` are the per-hop codec work of a collective
    that re-quantizes (one 1/p chunk each).
    """

    numel: int  # gradient elements in the bucket
    ready_s: float  # when its last gradient is ready, seconds after backward starts
    payload_bytes: tuple[float, ...]  # per rank (fewer entries than ranks: reused cyclically)
    encode_s: float  # encode the bucket on one rank (before the first round)
    decode_s: float  # decode ONE payload of the last round
    rounds: tuple[Round, ...] = ()
    hop_decode_s: float = 0.0
    hop_encode_s: float = 0.0

    def bytes_for(self, p: int) -> list[float]:
        return Round(self.payload_bytes).bytes_for(p)

    def all_rounds(self) -> tuple[Round, ...]:
        return self.rounds if self.rounds else (Round(self.payload_bytes),)


@dataclass(frozen=True)
class IterationSpec:
    forward_s: float
    backward_s: float
    optimizer_s: float
    buckets: tuple[BucketCost, ...]
    collective: str
    collective_opts: Mapping[str, Any] = field(default_factory=dict)
    overlap: bool = True
    codec_overlap: str = "shared"


@dataclass
class IterationResult:
    """Times of the critical rank (the last to finish; the slowest on ties).

    Additive breakdown: ``iteration_s == compute_s + encode_s + decode_s + exposed_comm_s``.
    With ``codec_overlap="shared"`` the device's time is split by share: ``compute_s`` is
    exactly the compute work and ``encode_s``/``decode_s`` all the codec work (none of it
    hides under backward); with ``"free"`` codec time counts only where no compute runs.
    ``exposed_comm_s`` is the time the device is idle (communication in flight, or waiting
    for the other ranks). ``comm_s`` is the time any collective was in flight;
    ``hidden_comm_s`` the part of it overlapped with compute or codec work.
    ``encode_total_s``/``decode_total_s`` are the critical rank's whole codec work.
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


@dataclass
class _Job:
    work: float
    remaining: float
    kind: str
    done: simpy.Event


class _Device:
    """One rank's device: compute and the codec stream served by processor sharing
    (``shared``: n active jobs each progress at 1/n) or side by side (each at full speed).

    ``log`` holds ``(t0, t1, kind, share)`` pieces; every job active in ``[t0, t1]`` has
    one, and no piece straddles another job's arrival or completion.
    """

    def __init__(self, env: simpy.Environment, shared: bool) -> None:
        self.env = env
        self.shared = shared
        self.jobs: list[_Job] = []
        self.t_last = 0.0
        self.version = 0
        self.log: list[tuple[float, float, str, float]] = []

    def run(self, work_s: float, kind: str) -> simpy.Event:
        done = self.env.event()
        if work_s <= 0:
            done.succeed()
            return done
        self._advance()
        self.jobs.append(_Job(work_s, work_s, kind, done))
        self._schedule()
        return done

    def _rate(self) -> float:
        return 1.0 / len(self.jobs) if self.shared and self.jobs else 1.0

    def _advance(self) -> None:
        now = float(self.env.now)
        dt = now - self.t_last
        if dt > 0 and self.jobs:
            rate = self._rate()
            for j in self.jobs:
                j.remaining -= dt * rate
                self.log.append((self.t_last, now, j.kind, rate))
        self.t_last = now

    def _schedule(self) -> None:
        self.version += 1
        if self.jobs:
            dt = min(j.remaining for j in self.jobs) / self._rate()
            # a plain timeout with a callback (no process per reschedule): a stale one, from
            # before a later arrival rescheduled, sees another version and does nothing
            ev = self.env.timeout(max(0.0, dt))
            version = self.version

            def fire(_ev: simpy.Event) -> None:
                self._fire(version)

            ev.callbacks.append(fire)

    def _fire(self, version: int) -> None:
        if version != self.version:
            return
        self._advance()
        # done: within rounding of its work, or too little left to move the clock at all
        # (far into a run, now + remaining / rate == now would reschedule forever)
        tick = 4.0 * math.ulp(float(self.env.now)) * self._rate()
        finished = [j for j in self.jobs if j.remaining <= 1e-12 * j.work + max(1e-15, tick)]
        self.jobs = [j for j in self.jobs if j not in finished]
        for j in finished:
            j.done.succeed()
        self._schedule()


class _Stream:
    """One rank class's codec stream: one job at a time, in the order asked for (as a
    ``simpy.Resource`` of capacity 1 grants them), each run on the class's device. Jobs
    chain by callbacks (no process, request or release event per job: a re-quantizing
    ring asks for two jobs per hop, 65,532 per bucket at 16,384 ranks)."""

    def __init__(self, env: simpy.Environment, device: _Device,
                 intervals: list[tuple[float, float, str, int]]) -> None:
        self.env = env
        self.device = device
        self.intervals = intervals
        self.busy = False
        self.queue: deque[tuple[str, float, int, simpy.Event]] = deque()

    def submit(self, kind: str, seconds: float, bucket: int) -> simpy.Event:
        """The event that fires when this job, after those asked for before it, is done."""
        done = self.env.event()
        if self.busy:
            self.queue.append((kind, seconds, bucket, done))
        else:
            self._start(kind, seconds, bucket, done)
        return done

    def _start(self, kind: str, seconds: float, bucket: int, done: simpy.Event) -> None:
        self.busy = True
        t0 = float(self.env.now)

        def finish(_ev: simpy.Event) -> None:
            if seconds > 0:
                self.intervals.append((t0, float(self.env.now), kind, bucket))
            self.busy = False
            done.succeed()
            if self.queue:
                self._start(*self.queue.popleft())

        self.device.run(seconds, kind).callbacks.append(finish)


def _union(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, disjoint union of intervals."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _measure(intervals: Sequence[tuple[float, float]]) -> float:
    """Total length of a union of intervals."""
    return float(sum(b - a for a, b in _union(intervals)))


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Length of the intersection of two sorted disjoint interval lists."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


_PRIORITY = {"compute": 0, "encode": 1, "decode": 2}


def _attribute(log: Sequence[tuple[float, float, str, float]], shared: bool) -> dict[str, float]:
    """Seconds of the device's time per kind: by share when shared, else each piece of
    time to the highest-priority kind running then (compute, encode, decode)."""
    out = {"compute": 0.0, "encode": 0.0, "decode": 0.0}
    if shared:
        for a, b, kind, share in log:
            out[kind] += (b - a) * share
        return out
    best: dict[tuple[float, float], str] = {}
    for a, b, kind, _ in log:
        k = (a, b)
        if k not in best or _PRIORITY[kind] < _PRIORITY[best[k]]:
            best[k] = kind
    for (a, b), kind in best.items():
        out[kind] += b - a
    return out


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
    network: type[Network] = Network,
) -> IterationResult:
    """Simulate one iteration of ``spec`` on ``topology``; see :class:`IterationResult`.

    ``network`` is the flow engine class (the benchmark runs the ungrouped one beside it)."""
    for name in ("forward_s", "backward_s", "optimizer_s"):
        if getattr(spec, name) < 0:
            raise ConfigError(f"IterationSpec.{name} must be >= 0, got {getattr(spec, name)}")
    if spec.codec_overlap not in CODEC_OVERLAPS:
        raise ConfigError(f"codec_overlap must be one of {', '.join(CODEC_OVERLAPS)}, got {spec.codec_overlap!r}")
    p = topology.num_ranks
    COLLECTIVES.get(spec.collective)  # an unknown name lists the valid ones
    factors = _compute_factors(p, stragglers, jitter, seed)
    classes, rank_class = np.unique(factors, return_inverse=True)
    reps = [int(np.flatnonzero(rank_class == c)[0]) for c in range(len(classes))]

    env = simpy.Environment()
    net = network(env, topology, per_message_overhead_s=per_message_overhead_s, efficiency=efficiency)
    ranks = list(range(p))
    nb = len(spec.buckets)
    ncls = len(classes)
    shared = spec.codec_overlap == "shared"
    devices = [_Device(env, shared) for _ in range(ncls)]
    comm_stream = simpy.Resource(env, capacity=1)
    ready = [[env.event() for _ in range(nb)] for _ in range(ncls)]
    bwd_done = [env.event() for _ in range(ncls)]
    enc_done = [[env.event() for _ in range(nb)] for _ in range(ncls)]
    dec_done = [[env.event() for _ in range(nb)] for _ in range(ncls)]
    comm_done = [env.event() for _ in range(nb)]
    codec_iv: list[list[tuple[float, float, str, int]]] = [[] for _ in range(ncls)]
    streams = [_Stream(env, devices[c], codec_iv[c]) for c in range(ncls)]
    comm_iv: list[tuple[float, float, int]] = []
    end_t = np.zeros(ncls)
    bwd_end_t = np.zeros(ncls)
    order = sorted(range(nb), key=lambda b: spec.buckets[b].ready_s)

    def compute(c: int) -> Any:
        f = classes[c]
        dev = devices[c]
        yield dev.run(spec.forward_s * f, "compute")
        done = 0.0
        for b in order:
            target = min(max(spec.buckets[b].ready_s, 0.0), spec.backward_s) * f
            if target > done:
                yield dev.run(target - done, "compute")
                done = target
            ready[c][b].succeed()
        if spec.backward_s * f > done:
            yield dev.run(spec.backward_s * f - done, "compute")
        bwd_end_t[c] = env.now
        bwd_done[c].succeed()

    def on_all(kind: str, seconds: float, b: int) -> simpy.Event:
        if ncls == 1:  # one class of ranks: its job is the event (no condition around it)
            return streams[0].submit(kind, seconds, b)
        return simpy.AllOf(env, [streams[c].submit(kind, seconds, b) for c in range(ncls)])

    def encoder(c: int, b: int) -> Any:
        if spec.overlap:
            yield ready[c][b]
        elif b == 0:
            yield bwd_done[c]
        else:
            yield dec_done[c][b - 1]
        yield streams[c].submit("encode", spec.buckets[b].encode_s, b)
        enc_done[c][b].succeed()

    def communicator(b: int) -> Any:
        bucket = spec.buckets[b]
        yield simpy.AllOf(env, [enc_done[c][b] for c in range(ncls)])
        for k, rnd in enumerate(bucket.all_rounds()):
            if k > 0 and rnd.work_before_s > 0:
                yield on_all("encode", rnd.work_before_s, b)
            name = rnd.collective or spec.collective
            info = collective_info(name)
            opts = dict(spec.collective_opts if rnd.collective is None else {})
            opts.update(rnd.options)
            if info.requantizes:
                opts.update(hop_decode_s=bucket.hop_decode_s, hop_encode_s=bucket.hop_encode_s,
                            work=lambda kind, sec, _b=b: on_all(kind, sec, _b))
            with comm_stream.request() as req:
                yield req
                t0 = env.now
                yield env.process(info.fn(net, ranks, rnd.bytes_for(p), **opts))
                comm_iv.append((t0, env.now, b))
        comm_done[b].succeed()

    def decoder(c: int, b: int) -> Any:
        bucket = spec.buckets[b]
        yield comm_done[b]
        last = bucket.all_rounds()[-1].collective or spec.collective
        n = collective_info(last).decodes(p)
        yield streams[c].submit("decode", bucket.decode_s * n, b)
        dec_done[c][b].succeed()

    def finisher(c: int) -> Any:
        yield simpy.AllOf(env, [bwd_done[c], *dec_done[c]])
        yield devices[c].run(spec.optimizer_s * classes[c], "compute")
        end_t[c] = env.now

    for c in range(ncls):
        env.process(compute(c))
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
    log = devices[crit].log
    shares = _attribute(log, shared)
    busy = _union([(a, b) for a, b, _, _ in log])
    comm_union = _union([(a, b) for a, b, _ in comm_iv])
    busy_s = float(sum(b - a for a, b in busy))
    comm_s = float(sum(b - a for a, b in comm_union))
    exposed = max(0.0, T - busy_s)
    comm_idle = comm_s - _overlap(comm_union, busy)
    iv = codec_iv[crit]

    total_bytes = net.bytes_sent
    segments = _segments(spec, classes, rank_class, reps, crit, codec_iv, comm_iv, bwd_end_t, end_t,
                         net, trace_ranks, trace_transfers)
    links = net.link_usage(T) if trace_ranks > 0 else []  # untraced: its time only
    n_transfers = net.n_transfers
    if isinstance(net, Network):
        net.release()
    return IterationResult(
        iteration_s=T,
        compute_s=shares["compute"],
        forward_s=fwd,
        backward_s=bwd,
        optimizer_s=opt,
        encode_s=shares["encode"],
        decode_s=shares["decode"],
        comm_s=comm_s,
        exposed_comm_s=exposed,
        hidden_comm_s=max(0.0, comm_s - comm_idle),
        encode_total_s=float(sum(_work(iv, "encode"))),
        decode_total_s=float(sum(_work(iv, "decode"))),
        bytes_per_rank=total_bytes / p,
        n_transfers=n_transfers,
        critical_rank=reps[crit],
        segments=segments,
        links=links,
    )


def _work(iv: Sequence[tuple[float, float, str, int]], kind: str) -> list[float]:
    return [b - a for a, b, k, _ in iv if k == kind]


def _segments(
    spec: IterationSpec,
    classes: np.ndarray,
    rank_class: np.ndarray,
    reps: Sequence[int],
    crit: int,
    codec_iv: Sequence[Sequence[tuple[float, float, str, int]]],
    comm_iv: Sequence[tuple[float, float, int]],
    bwd_end_t: np.ndarray,
    end_t: np.ndarray,
    net: Network,
    trace_ranks: int,
    trace_transfers: int,
) -> list[Segment]:
    """Timeline segments of a few ranks (the critical one first) for the dashboard; none
    for ``trace_ranks=0`` (an iteration run for its time only: no segments, no link loads)."""
    if trace_ranks <= 0:
        return []
    p = len(rank_class)
    shown: list[int] = [reps[crit]]
    for r in range(p):
        if len(shown) >= min(trace_ranks, p):
            break
        if r not in shown:
            shown.append(r)
    per_transfer = net.n_transfers <= trace_transfers
    rec = net.records if per_transfer else None
    segs: list[Segment] = []
    for r in shown:
        c = int(rank_class[r])
        f = classes[c]
        fb = spec.forward_s * f
        segs.append(Segment(r, "forward", 0.0, fb, "forward"))
        segs.append(Segment(r, "backward", fb, float(bwd_end_t[c]), "backward"))
        segs += [Segment(r, kind, a, b, f"bucket {k}") for a, b, kind, k in codec_iv[c]]
        segs.append(Segment(r, "optimizer", float(end_t[c]) - spec.optimizer_s * f, float(end_t[c]), "optimizer"))
        if rec is not None and len(rec):
            mask = rec.src == r
            for s, e, d, tag in zip(rec.start_s[mask], rec.end_s[mask], rec.dst[mask], np.asarray(rec.tag, dtype=object)[mask], strict=True):
                segs.append(Segment(r, "comm", float(s), float(e), f"{tag} -> {int(d)}"))
        else:
            segs += [Segment(r, "comm", a, b, f"bucket {k} {spec.collective}") for a, b, k in comm_iv]
    return segs
