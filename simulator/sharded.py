"""One training iteration of sharded data parallelism (FSDP, ZeRO 1-3, HSDP) as a SimPy timeline.

The model is cut into **units** (FSDP's wrapping: one per transformer block by default, the
rest in the root), given in forward order with their compute times and two exchanges:

* the **parameter all-gather** (:class:`Gather`): before a unit's forward (and again before
  its backward when the unit was resharded after forward) every rank of the shard group
  contributes its 1/g shard of the unit's parameters and receives the others (a ring
  all-gather, as NCCL runs it); a quantized gather (ZeRO++'s qwZ) encodes the rank's shard
  first and decodes all g shards after;
* the **gradient reduce-scatter** (:class:`Reduce`): after a unit's backward its gradient is
  reduce-scattered over the shard group; a summable payload (fp32 in place, a bf16/fp16
  cast) by a ring reduce-scatter that adds on the way, an encoded payload (4-bit QSGD,
  ZeRO++'s qgZ) through the hierarchical all-to-all of
  :mod:`~gradwire.simulator.collectives.hierarchical_alltoall` (decoded and added, then
  re-encoded, once per level). HSDP then all-reduces the shard across the replicas (the
  ranks with the same place in their group): a ring allreduce of a summable shard, or for
  an encoded one a compressed allreduce (the re-encoded partial sum all-to-all'd in 1/n
  slices, decoded and added, re-encoded and ring all-gathered), three quantizations in all.

Modes (``ShardedSpec.mode``): ``fsdp`` and ``zero3`` gather parameters per unit in forward
and backward and reduce-scatter gradients per unit (``zero3`` reshards every unit, the
ZeRO paper's 3Ψ; ``fsdp`` keeps the root unit gathered from forward to backward, as
PyTorch's ``fully_shard`` does); ``zero1``/``zero2`` keep parameters replicated,
reduce-scatter gradients per unit during backward, step the optimizer on the shard and
all-gather the updated parameters after the step (the ZeRO paper's 2Ψ, as DDP); ``hsdp``
is ``fsdp`` within groups of ``group`` ranks, replicated across them.

Streams: compute and codec work share the rank's device (processor sharing with
``codec_overlap="shared"``, as in :mod:`~gradwire.simulator.timeline`); all-gathers run in
issue order on one communication stream and reduce-scatters on another (FSDP2's
all-gather and reduce-scatter streams), concurrently on the network. With ``prefetch`` the
next unit's all-gather is issued when a unit's compute is about to start (FSDP's forward
prefetch and ``BACKWARD_PRE``), else when it is needed. Every rank runs the same program,
so the device is simulated once; the network sees every rank. Plain numbers in and out.

Rings are **streamed**, as NCCL pipelines a ring's chunks rather than stepping in lock-step:
each rank sends its successor the ``(g-1)/g`` of the buffer it forwards as one flow, then
the other ``g - 2`` hops' latency and per-message overhead elapse. On uncontended links this
equals the lock-step ring's ``(g-1)(alpha + M/(gB))`` (``lockstep=True`` runs the steps, and
the tests compare); when an all-gather and a reduce-scatter share links, max-min fairness
shares them continuously instead of step by step, and the cost is a few events per
collective instead of ``g - 1``. All-to-alls run as :data:`ALLTOALL_SHIFTS` shift
permutations (each rank's bytes through 8 flows, not one per peer), which takes the same
time where a rank's own links bound the exchange (tested), so a 70B model on 4,096 GPUs
simulates in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from gradwire.errors import ConfigError
from gradwire.results import Segment
from gradwire.simulator.collectives.base import ring_steps
from gradwire.simulator.collectives.hierarchical_alltoall import (
    _alltoall_batch,
    hierarchical_alltoall,
    quantizations,
)
from gradwire.simulator.network import Network
from gradwire.simulator.timeline import (
    CODEC_OVERLAPS,
    IterationResult,
    _attribute,
    _Device,
    _overlap,
    _union,
)
from gradwire.simulator.topology import Topology

SHARDED_MODES: tuple[str, ...] = ("fsdp", "zero1", "zero2", "zero3", "hsdp")
# all-to-alls as this many shift permutations (hierarchical_alltoall's ``shifts``): the
# same time where each rank's own links bound it, at a few flows per rank at any scale
ALLTOALL_SHIFTS = 8
GATHERS_PER_UNIT = {"fsdp": True, "zero3": True, "hsdp": True, "zero1": False, "zero2": False}


@dataclass(frozen=True)
class Gather:
    """A unit's parameter all-gather: ``nbytes`` the whole unit's parameters as they cross
    the wire (each of the g ranks contributes ``nbytes / g``); ``encode_s`` encodes one
    rank's shard, ``decode_s`` decodes all g shards (0 for parameters sent as they are)."""

    nbytes: float
    encode_s: float = 0.0
    decode_s: float = 0.0


@dataclass(frozen=True)
class Reduce:
    """A unit's gradient reduce-scatter: ``nbytes`` the whole unit's gradient payload on
    one rank; ``encode_s`` encodes it, ``decode_s`` decodes a whole payload and adds it into
    the float32 sum (a cast back, for a summable cast); ``quantized``: the payload must be
    decoded before it can be added (hierarchical all-to-all), else a ring adds it."""

    nbytes: float
    encode_s: float = 0.0
    decode_s: float = 0.0
    quantized: bool = False


@dataclass(frozen=True)
class ShardUnit:
    name: str
    numel: int
    forward_s: float
    backward_s: float
    gather: Gather
    reduce: Reduce
    reshard: bool = True  # parameters freed after forward, gathered again for backward


@dataclass(frozen=True)
class ShardedSpec:
    """One sharded iteration: ``units`` in forward order, ``optimizer_s`` the step on one
    rank's shard, ``group`` ranks per shard group (0: every rank), ``final_gather`` the
    parameter all-gather after the step (ZeRO-1/2: the whole model)."""

    mode: str
    units: tuple[ShardUnit, ...]
    optimizer_s: float
    group: int = 0
    prefetch: bool = True
    codec_overlap: str = "shared"
    final_gather: Gather | None = None

    def __post_init__(self) -> None:
        if self.mode not in SHARDED_MODES:
            raise ConfigError(f"parallelism must be one of {', '.join(SHARDED_MODES)} here, got {self.mode!r}")
        if self.codec_overlap not in CODEC_OVERLAPS:
            raise ConfigError(f"codec_overlap must be one of {', '.join(CODEC_OVERLAPS)}, got {self.codec_overlap!r}")
        if not self.units:
            raise ConfigError("a sharded iteration needs at least one unit")
        for u in self.units:
            for name in ("forward_s", "backward_s"):
                if not getattr(u, name) >= 0:
                    raise ConfigError(f"unit {u.name!r}: {name} must be >= 0, got {getattr(u, name)}")


def shard_grid(mode: str, p: int, group: int) -> np.ndarray:
    """Ranks as an (n, g) array: row k is shard group k, column j the replicas of shard j."""
    g = group if mode == "hsdp" and group > 0 else p
    if g > p or p % g:
        raise ConfigError(f"sharding.group: {g} ranks per shard group do not divide {p} workers; "
                          f"choose a divisor of {p}")
    return np.arange(p, dtype=np.int64).reshape(p // g, g)


def wire_bytes(spec: ShardedSpec, topology: Topology) -> float:
    """Bytes one rank sends in an iteration of ``spec`` (the closed form of what the
    timeline moves): per gather ``(g-1)/g`` of the unit; per reduce-scatter ``(g-1)/g``
    (ring) or :func:`~gradwire.simulator.collectives.hierarchical_alltoall.bytes_per_rank`
    over the topology's servers; for HSDP's replicas ``2(n-1)/n`` of the shard (allreduce)
    or ``n-1`` encoded shards (all-gather)."""
    from gradwire.simulator.collectives.hierarchical_alltoall import bytes_per_rank, rank_grid

    p = topology.num_ranks
    n, g = shard_grid(spec.mode, p, spec.group).shape
    sn, sg = rank_grid(topology, np.arange(p, dtype=np.int64)).shape
    total = 0.0
    for u in spec.units:
        if GATHERS_PER_UNIT[spec.mode]:
            total += (2 if u.reshard else 1) * u.gather.nbytes * (g - 1) / g
        r = u.reduce
        if spec.mode == "hsdp":  # within the group, then an allreduce of the shard over n replicas
            total += r.nbytes * (g - 1) / g + 2 * (n - 1) / n * r.nbytes / g
        elif r.quantized:
            total += bytes_per_rank(r.nbytes, sg, sn)
        else:
            total += r.nbytes * (p - 1) / p
    if spec.final_gather is not None:
        total += spec.final_gather.nbytes * (g - 1) / g
    return total


def element_quantizations(spec: ShardedSpec, topology: Topology) -> int:
    """How many times the gradient reduce-scatter encodes each element of a quantized unit."""
    from gradwire.simulator.collectives.hierarchical_alltoall import rank_grid

    p = topology.num_ranks
    if spec.mode == "hsdp":  # the group's all-to-all, then the replicas' all-to-all and all-gather
        n, g = shard_grid(spec.mode, p, spec.group).shape
        return (1 if g > 1 else 0) + (2 if n > 1 else 0) if p > 1 else 1
    n, g = rank_grid(topology, np.arange(p, dtype=np.int64)).shape
    return quantizations(g, n)


def simulate_sharded(
    spec: ShardedSpec,
    topology: Topology,
    *,
    per_message_overhead_s: float = 0.0,
    efficiency: float = 1.0,
    trace_transfers: int = 4000,
    links: bool = True,
    network: type[Network] = Network,
    lockstep: bool = False,
) -> IterationResult:
    """Simulate one iteration of ``spec`` on ``topology`` (see the module docstring); the
    breakdown is additive as in :class:`~gradwire.simulator.timeline.IterationResult`.
    ``lockstep`` runs each ring as ``steps`` lock-step steps
    (:func:`~gradwire.simulator.collectives.base.ring_steps`) instead of streamed; ``links``
    False leaves out the per-link loads (an iteration run for its time only)."""
    p = topology.num_ranks
    grid = shard_grid(spec.mode, p, spec.group)
    n, g = grid.shape
    env = simpy.Environment()
    net = network(env, topology, per_message_overhead_s=per_message_overhead_s, efficiency=efficiency)
    shared = spec.codec_overlap == "shared"
    dev = _Device(env, shared)
    codec_stream = simpy.Resource(env, capacity=1)
    ag_stream = simpy.Resource(env, capacity=1)
    rs_stream = simpy.Resource(env, capacity=1)
    units = spec.units
    nu = len(units)
    gathers = GATHERS_PER_UNIT[spec.mode]
    gathered: dict[tuple[int, str], simpy.Event] = {}
    reduced = [env.event() for _ in range(nu)]
    bwd_done = env.event()
    codec_iv: list[tuple[float, float, str, str]] = []
    comm_iv: list[tuple[float, float, str]] = []
    compute_iv: list[tuple[float, float, str, str]] = []
    end_t = [0.0]
    ranks = grid.ravel()
    # ring of each shard group (all groups in one batch), and the replica rings across them
    g_src, g_dst = grid.ravel(), np.roll(grid, -1, axis=1).ravel()
    r_src, r_dst = grid.ravel(), np.roll(grid, -1, axis=0).ravel()
    hop_s = {id(g_src): _max_latency(topology, g_src, g_dst), id(r_src): _max_latency(topology, r_src, r_dst)}

    def ring(src: np.ndarray, dst: np.ndarray, chunk: float, steps: int, tag: str) -> Any:
        """``steps`` ring steps of ``chunk`` bytes: streamed (each rank sends its successor
        ``steps * chunk`` bytes in one flow, then the other ``steps - 1`` hops' latency and
        per-message overhead), or lock-step."""
        if steps <= 0 or chunk <= 0:
            return
        if lockstep:
            yield from ring_steps(net, src, dst, chunk, steps, tag)
            return
        yield net.transfers(src, dst, chunk * steps, tag)
        if steps > 1:
            yield env.timeout((steps - 1) * (hop_s[id(src)] + per_message_overhead_s))

    def codec(kind: str, seconds: float, label: str) -> Any:
        with codec_stream.request() as req:
            yield req
            t0 = env.now
            yield dev.run(seconds, kind)
            if seconds > 0:
                codec_iv.append((t0, env.now, kind, label))

    def work(label: str) -> Callable[[str, float], simpy.Event]:
        return lambda kind, seconds: env.process(codec(kind, seconds, label))

    def run_compute(seconds: float, kind: str, label: str) -> Any:
        t0 = env.now
        yield dev.run(seconds, "compute")
        if seconds > 0:
            compute_iv.append((t0, env.now, kind, label))

    def gather(ga: Gather, label: str, done: simpy.Event) -> Any:
        if ga.encode_s > 0:
            yield env.process(codec("encode", ga.encode_s, label))
        with ag_stream.request() as req:
            yield req
            t0 = env.now
            if g > 1 and ga.nbytes > 0:
                yield from ring(g_src, g_dst, ga.nbytes / g, g - 1, f"{label}:")
            comm_iv.append((t0, env.now, label))
        if ga.decode_s > 0:
            yield env.process(codec("decode", ga.decode_s, label))
        done.succeed()

    def issue(u: int, phase: str) -> simpy.Event:
        key = (u, phase)
        if key not in gathered:
            gathered[key] = env.event()
            env.process(gather(units[u].gather, f"all-gather {phase} {units[u].name}", gathered[key]))
        return gathered[key]

    def hsdp_quantized(rd: Reduce, label: str) -> Any:
        """An encoded gradient under HSDP: the intra-group all-to-all (decode and add the g
        slices), then across the n replicas a compressed allreduce of the rank's 1/g
        partial sum: re-encode it, all-to-all its 1/n slices, decode and add them, re-encode
        the 1/(gn) result and all-gather it, decoding the n slices."""
        if g > 1:
            src, dst, size = _alltoall_batch(grid, np.full(grid.shape, rd.nbytes / g), ALLTOALL_SHIFTS)
            yield net.transfers(src, dst, size, f"{label}:intra")
            yield env.process(codec("decode", rd.decode_s, label))
        if n > 1:
            if g > 1:
                yield env.process(codec("encode", rd.encode_s / g, label))
            cols = grid.T.copy()
            src, dst, size = _alltoall_batch(cols, np.full(cols.shape, rd.nbytes / g / n), ALLTOALL_SHIFTS)
            yield net.transfers(src, dst, size, f"{label}:replicas")
            yield env.process(codec("decode", rd.decode_s / g, label))
            yield env.process(codec("encode", rd.encode_s / g / n, label))
            yield from ring(r_src, r_dst, rd.nbytes / g / n, n - 1, f"{label}:replicas-gather:")
            yield env.process(codec("decode", rd.decode_s / g, label))

    def reduce(u: int) -> Any:
        rd = units[u].reduce
        label = f"reduce-scatter {units[u].name}"
        if rd.encode_s > 0:
            yield env.process(codec("encode", rd.encode_s, label))
        with rs_stream.request() as req:
            yield req
            t0 = env.now
            if rd.nbytes > 0 and p > 1:
                if not rd.quantized:
                    if g > 1:
                        yield from ring(g_src, g_dst, rd.nbytes / g, g - 1, f"{label}:")
                    if n > 1:  # HSDP: allreduce of the shard across the replicas
                        yield from ring(r_src, r_dst, rd.nbytes / g / n, 2 * (n - 1), f"{label}:replicas:")
                elif spec.mode == "hsdp":
                    yield from hsdp_quantized(rd, label)
                else:
                    yield from hierarchical_alltoall(net, ranks, np.full(p, rd.nbytes), decode_s=rd.decode_s,
                                                     encode_s=rd.encode_s, work=work(label), tag=label,
                                                     shifts=ALLTOALL_SHIFTS)
            comm_iv.append((t0, env.now, label))
        if rd.nbytes > 0 and p > 1 and not rd.quantized and rd.decode_s > 0:
            yield env.process(codec("decode", rd.decode_s / g, label))  # a cast back, of this rank's shard
        reduced[u].succeed()

    def compute() -> Any:
        for u in range(nu):
            if gathers:
                yield issue(u, "forward")
                if spec.prefetch and u + 1 < nu:
                    issue(u + 1, "forward")
            yield from run_compute(units[u].forward_s, "forward", units[u].name)
        for u in reversed(range(nu)):
            if gathers and units[u].reshard:
                yield issue(u, "backward")
            if gathers and spec.prefetch and u > 0 and units[u - 1].reshard:
                issue(u - 1, "backward")
            yield from run_compute(units[u].backward_s, "backward", units[u].name)
            env.process(reduce(u))
        bwd_done.succeed()

    def finisher() -> Any:
        yield simpy.AllOf(env, [bwd_done, *reduced])
        yield from run_compute(spec.optimizer_s, "optimizer", "optimizer step on the shard")
        if spec.final_gather is not None:
            done = env.event()
            env.process(gather(spec.final_gather, "all-gather of the updated parameters", done))
            yield done
        end_t[0] = env.now

    env.process(compute())
    env.process(finisher())
    env.run()

    T = end_t[0]
    log = dev.log
    shares = _attribute(log, shared)
    busy = _union([(a, b) for a, b, _, _ in log])
    comm_union = _union([(a, b) for a, b, _ in comm_iv])
    busy_s = float(sum(b - a for a, b in busy))
    comm_s = float(sum(b - a for a, b in comm_union))
    comm_idle = comm_s - _overlap(comm_union, busy)
    fwd = sum(u.forward_s for u in units)
    bwd = sum(u.backward_s for u in units)
    usage = net.link_usage(T) if T > 0 and links else []
    n_transfers, sent = net.n_transfers, net.bytes_sent
    if isinstance(net, Network):
        net.release()
    segments = [Segment(0, kind, a, b, label) for a, b, kind, label in compute_iv]
    segments += [Segment(0, kind, a, b, label) for a, b, kind, label in codec_iv]
    segments += [Segment(0, "comm", a, b, label) for a, b, label in comm_iv]
    return IterationResult(
        iteration_s=T, compute_s=shares["compute"], forward_s=fwd, backward_s=bwd,
        optimizer_s=spec.optimizer_s, encode_s=shares["encode"], decode_s=shares["decode"],
        comm_s=comm_s, exposed_comm_s=max(0.0, T - busy_s), hidden_comm_s=max(0.0, comm_s - comm_idle),
        encode_total_s=float(sum(b - a for a, b, k, _ in codec_iv if k == "encode")),
        decode_total_s=float(sum(b - a for a, b, k, _ in codec_iv if k == "decode")),
        bytes_per_rank=sent / p, n_transfers=n_transfers, critical_rank=0,
        segments=segments, links=usage,
    )


def _max_latency(topology: Topology, src: np.ndarray, dst: np.ndarray) -> float:
    """The largest route latency over the pairs ``src[i] -> dst[i]`` (distinct ranks)."""
    lat = [topology.route_latency_s(int(a), int(b)) for a, b in zip(src.tolist(), dst.tolist(), strict=True)
           if a != b]
    return max(lat, default=0.0)


def forward_order_units(names: Sequence[str], ready_s: Sequence[float], depth: int | None,
                        decoder: bool) -> list[tuple[str, list[int]]]:
    """Parameters (given in backward order with their ready times) grouped into units, in
    forward order. ``depth`` None: a decoder's blocks ``layers.<i>`` one unit each and every
    other parameter in the root unit (``fully_shard`` on each block, then on the model);
    another model's top-level modules one unit each. ``depth`` k: the first k components of
    the parameter's name. A unit's place in backward order is when its last gradient is
    ready, so forward order is the reverse of that."""
    keys: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        parts = name.split(".")
        if depth is not None:
            key = ".".join(parts[:depth]) if len(parts) > 1 else "(root)"
        elif decoder:
            key = ".".join(parts[:2]) if parts[0] == "layers" and len(parts) > 2 else "(root)"
        else:
            key = parts[0] if len(parts) > 1 else "(root)"
        keys.setdefault(key, []).append(i)
    by_ready = sorted(keys.items(), key=lambda kv: (max(ready_s[i] for i in kv[1]), min(kv[1])))
    return list(reversed(by_ready))


__all__ = [
    "ALLTOALL_SHIFTS",
    "GATHERS_PER_UNIT",
    "SHARDED_MODES",
    "Gather",
    "Reduce",
    "ShardUnit",
    "ShardedSpec",
    "element_quantizations",
    "forward_order_units",
    "shard_grid",
    "simulate_sharded",
    "wire_bytes",
]
