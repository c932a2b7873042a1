"""Scenario -> rows: profile the workloads, measure the codecs, simulate every point.

The data flow is one way. :func:`prepare` does the expensive, shareable work once per
scenario: it profiles each distinct workload on the device at hand (cached on disk) and
encodes each parameter's real gradient with each codec, recording the real payload sizes
(for a few ranks' random streams) and the measured encode/decode times.
:func:`evaluate_point` then needs only plain numbers: it groups gradients into DDP buckets,
sums the measured costs per bucket, and simulates one iteration per codec on the point's
topology, returning one :class:`~gradwire.results.Row` per codec and a
:class:`~gradwire.results.Trace` for the dashboard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from gradwire.codecs.exchange import PAYLOAD, Exchange
from gradwire.errors import CodecError, ConfigError
from gradwire.iteration import (
    DDP_BUCKET_CAP_MIB,
    DDP_FIRST_BUCKET_BYTES,
    BucketInput,
    ExchangeChoice,
    ddp_buckets,
    iteration_spec,
)
from gradwire.models.devices import BYTES_PER_ELEMENT as GRAD_ELEM_BYTES
from gradwire.results import Row, Trace, add_speedups, coarsen_segments
from gradwire.scenarios.convert import cluster_params
from gradwire.scenarios.loader import Point, expand
from gradwire.scenarios.schema import Scenario

__all__ = [
    "CodecProfile",
    "ParamCost",
    "Point",
    "Prepared",
    "WorkloadSummary",
    "bucket_inputs",
    "build_topology",
    "ddp_buckets",
    "evaluate_point",
    "expand",
    "point_buckets",
    "prepare",
    "simulate_codec",
]


@dataclass(frozen=True)
class ParamCost:
    """One parameter's gradient through one codec: bits for each measured rank, seconds.

    ``round_bits[r]`` splits rank r's bits over the codec's exchange rounds (empty: one
    round of all ``nbits``)."""

    numel: int
    nbits: tuple[int, ...]
    encode_s: float
    decode_s: float
    round_bits: tuple[tuple[int, ...], ...] = ()

    def bits_in_rounds(self, rank: int) -> tuple[int, ...]:
        return self.round_bits[rank] if self.round_bits else (self.nbits[rank],)


@dataclass(frozen=True)
class CodecProfile:
    spec: str
    name: str
    summable: bool
    params: tuple[ParamCost, ...]  # in the workload's backward order
    estimate: bool = False  # times from a model of a target device, not measured
    exchange: Exchange = PAYLOAD  # the codec's declared exchange
    # per codec call (one per DDP bucket): fixed host overhead, charged once per bucket
    encode_call_s: float = 0.0
    decode_call_s: float = 0.0
    codec_source: str = ""  # where the times come from (gradwire.codec_costs)
    # their uncertainty (see gradwire.codec_costs.CodecTimes, gradwire.uncertainty)
    encode_spread: float = 0.0
    decode_spread: float = 0.0
    encode_error: float = 0.0
    decode_error: float = 0.0


@dataclass(frozen=True)
class WorkloadSummary:
    """The plain numbers of a profiled workload (no tensors: cheap to ship to sweep workers)."""

    model: str
    batch_size: int
    device: str
    forward_s: float
    backward_s: float
    optimizer_s: float
    numels: tuple[int, ...]  # backward order
    ready_s: tuple[float, ...]  # seconds after backward start
    names: tuple[str, ...]
    estimate: bool
    data_source: str
    target_device: str = ""  # provenance (gradwire.models.sources.WorkloadOrigin)
    precision: str = ""
    compute_source: str = ""
    efficiency_source: str = ""
    compute_error: float = 0.0  # an estimate's stated error (gradwire.models.sources.WorkloadOrigin)
    compute_spread: float = 0.0  # a measurement's spread

    @property
    def num_params(self) -> int:
        return int(sum(self.numels))


@dataclass
class Prepared:
    """Everything points need, computed once per scenario (picklable)."""

    workloads: dict[str, WorkloadSummary] = field(default_factory=dict)
    codecs: dict[tuple[str, str], CodecProfile] = field(default_factory=dict)
    # per workload, per parameter (backward order): seconds to add one decoded gradient
    # into a float32 sum (what a rank does per payload after a gather)
    sum_s: dict[str, tuple[float, ...]] = field(default_factory=dict)
    measured_on: str = "cpu"
    prepare_s: float = 0.0


def workload_key(sc: Scenario) -> str:
    m = sc.model
    measured = m.measured.model_dump_json() if m.measured else ""
    eff = m.efficiency.model_dump_json() if m.efficiency else ""
    return (f"{m.name}|{m.batch_size}|{m.device}|{m.dtype}|{m.target_device}|{m.compute_efficiency}|"
            f"{m.memory_efficiency}|{measured}|{m.profile_iters}|{m.module}|{m.loss}|{m.profile}|"
            f"{m.precision}|{eff}|{m.seq_len}|{m.llm.model_dump_json() if m.llm else ''}")


def _device(sc: Scenario) -> str:
    import torch

    if sc.model.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if sc.model.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.device: 'cuda' was asked for but no CUDA device is available; use 'auto' or 'cpu'")
    return sc.model.device


def _accumulate_times(sc: Scenario, wl: Any, dev: str) -> tuple[float, ...]:
    """Per parameter, the seconds to add one decoded gradient into a float32 sum: measured
    on the device at hand, or on a target device a streaming pass of 12 bytes per element
    (two float32 reads, one write) at its memory bandwidth."""
    if sc.model.target_device is not None:
        from gradwire.models.devices import get_device

        bw = get_device(sc.model.target_device).memory_bandwidth_Bps * sc.model.memory_efficiency
        return tuple(12.0 * p.numel / bw for p in wl.params)
    from gradwire.codecs.host_cache import accumulate_cached  # cached: runs repeat exactly

    return accumulate_cached([wl.gradients[p.name].to(dev) for p in wl.params], device=dev,
                             repeats=sc.measure.repeats)


def prepare(scenario: Scenario, *, points: Sequence[Point] | None = None, progress: bool = True,
            log: Callable[[str], None] | None = None) -> Prepared:
    """Profile every distinct workload and measure every codec on its real gradients."""
    import torch

    from gradwire.models.sources import prepare_workload

    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    pts = list(points) if points is not None else expand(scenario)
    prep = Prepared()
    seen: dict[str, Scenario] = {}
    for pt in pts:
        seen.setdefault(workload_key(pt.scenario), pt.scenario)
    for key, sc in seen.items():
        dev = _device(sc)
        prep.measured_on = dev
        # compute: a profile file, the user's measured times, an estimate, or a profile here
        wl, origin = prepare_workload(sc, dev, progress=progress, say=say)
        measure = codec_profile
        if wl.gradients is None:  # a meta-only model (LLM): payloads of synthetic gradients
            from gradwire.llm_codecs import synthetic_codec_profile as measure
        prep.workloads[key] = WorkloadSummary(
            model=wl.model, batch_size=wl.batch_size, device=wl.device,
            forward_s=wl.forward_s, backward_s=wl.backward_s, optimizer_s=wl.optimizer_s,
            numels=tuple(p.numel for p in wl.params), ready_s=tuple(p.ready_s for p in wl.params),
            names=tuple(p.name for p in wl.params), estimate=bool(wl.estimate),
            data_source=wl.data_source, target_device=origin.target_device, precision=origin.precision,
            compute_source=origin.compute_source, efficiency_source=origin.efficiency_source,
            compute_error=origin.compute_error, compute_spread=origin.compute_spread,
        )
        prep.sum_s[key] = _accumulate_times(sc, wl, dev)
        specs = list(dict.fromkeys(s for pt in pts if workload_key(pt.scenario) == key
                                   for s in _measured_specs(pt.scenario)))
        for spec in specs:
            say(f"codec {spec} on {len(wl.params)} {'real' if wl.gradients is not None else 'synthetic'} gradients")
            prep.codecs[(key, spec)] = measure(sc, spec, wl, dev, say)
        del wl
        if dev == "cuda":
            torch.cuda.empty_cache()
    prep.prepare_s = time.perf_counter() - t_start
    return prep


def _measured_specs(sc: Scenario) -> list[str]:
    """The codecs measured for a point: its ``codecs`` and a sharded mode's parameter codec."""
    pc = sc.sharding.param_codec if sc.parallelism != "ddp" else None
    return [*sc.codecs, *([pc] if pc and pc not in sc.codecs else [])]


def codec_profile(sc: Scenario, spec: str, wl: Any, dev: str, say: Callable[[str], None]) -> CodecProfile:
    """Payload bits of every gradient for ``sc.measure.ranks`` ranks, and the codec's times
    from :func:`gradwire.codec_costs.codec_times`."""
    from gradwire.codec_costs import codec_times
    from gradwire.codecs import make_codec
    from gradwire.codecs.measure import fresh_state

    codec = make_codec(spec, default_seed=sc.seed)
    grads = [wl.gradients[prm.name].to(dev) for prm in wl.params]
    all_bits = []
    for prm, g in zip(wl.params, grads, strict=True):
        try:  # payload sizes first: a gradient the codec refuses is named by its parameter
            bits = [codec.encode(g, fresh_state(codec, g.device, sc.seed)).nbits]
            bits += [codec.encode(g, codec.new_state(dev, worker=r)).nbits for r in range(1, sc.measure.ranks)]
        except CodecError as exc:
            raise type(exc)(f"model {sc.model.name!r}, gradient of parameter {prm.name!r}: {exc}") from None
        all_bits.append(bits)
    times = codec_times(sc, codec, grads, dev, say)
    costs = []
    for i, (prm, bits) in enumerate(zip(wl.params, all_bits, strict=True)):
        shape = tuple(prm.shape)
        costs.append(ParamCost(prm.numel, tuple(bits), times.encode_s[i], times.decode_s[i],
                               tuple(codec.round_bits(b, shape) for b in bits)))
    return CodecProfile(spec, codec.name, codec.summable, tuple(costs), estimate=times.estimate,
                        exchange=codec.exchange, encode_call_s=times.encode_call_s,
                        decode_call_s=times.decode_call_s, codec_source=times.source,
                        encode_spread=times.encode_spread, decode_spread=times.decode_spread,
                        encode_error=times.encode_error, decode_error=times.decode_error)


def build_topology(sc: Scenario) -> Any:
    """The point's topology with ``sc.workers`` ranks."""
    from gradwire.simulator.topology import Topology, make_topology

    c = sc.cluster
    if c.topology == "links":
        assert c.links is not None and c.gpus is not None  # checked by the schema pass
        g = nx.DiGraph()
        gpus: list[Hashable] = [str(x) for x in c.gpus]
        for link in c.links:
            for a, b in ((link.src, link.dst), (link.dst, link.src)):
                g.add_edge(str(a), str(b), bandwidth_Bps=link.bandwidth_Gbps * 1e9 / 8,
                           latency_s=link.latency_us * 1e-6)
        for n in g.nodes:
            g.nodes[n]["kind"] = "gpu" if n in gpus else "switch"
        topo = Topology(g, gpus, "links")
        return topo.with_ranks(sc.workers) if sc.workers != topo.num_ranks else topo
    return make_topology(c.topology, num_ranks=sc.workers, **cluster_params(c))


def _layout(topology: Any) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """Node positions and kinds for drawing (left out for graphs too big to draw)."""
    if topology.graph.number_of_nodes() > 600:
        return {}, {}
    return topology.positions(), topology.node_kinds()




def point_buckets(sc: Scenario, numels: Sequence[int]) -> list[list[int]]:
    """DDP's buckets of the point over the gradient dtype's bytes: ``bucket_MB`` in MiB as
    ``bucket_cap_mb``; unset, DDP's default (25 MiB after a 1 MiB first bucket)."""
    cap = (sc.bucket_MB if sc.bucket_MB is not None else DDP_BUCKET_CAP_MIB) * 2**20
    if sc.first_bucket_MB is not None:
        first = sc.first_bucket_MB * 2**20
    else:
        first = DDP_FIRST_BUCKET_BYTES if sc.bucket_MB is None else cap
    return ddp_buckets(numels, cap, elem_bytes=GRAD_ELEM_BYTES[sc.model.dtype], first_bucket_bytes=first)


def bucket_inputs(prof: CodecProfile, groups: Sequence[Sequence[int]], ready_s: Sequence[float],
                  sum_s: Sequence[float] | None = None) -> list[BucketInput]:
    """Per bucket: its elements, ready time, bytes per measured rank and round, codec times,
    and the time to add one decoded payload into the sum."""
    nranks = len(prof.params[0].nbits) if prof.params else 1
    nrounds = len(prof.exchange.rounds)
    out = []
    for grp in groups:
        costs = [prof.params[i] for i in grp]
        rb = tuple(
            tuple(float(sum((c.bits_in_rounds(r)[k] + 7) // 8 for c in costs)) for k in range(nrounds))
            for r in range(nranks)
        )
        out.append(BucketInput(
            numel=sum(c.numel for c in costs), ready_s=max(ready_s[i] for i in grp), round_bytes=rb,
            # per-call terms of the codec's cost model: one codec call per bucket
            encode_s=sum(c.encode_s for c in costs) + prof.encode_call_s,
            decode_s=sum(c.decode_s for c in costs) + prof.decode_call_s,
            sum_s=sum(sum_s[i] for i in grp) if sum_s is not None else 0.0,
        ))
    return out


def simulate_codec(sc: Scenario, prepared: Prepared, spec: str, topology: Any, *,
                   groups: Sequence[Sequence[int]] | None = None, choice: ExchangeChoice | None = None,
                   stragglers: dict[int, float] | None = None, scale: Any = None,
                   efficiency: float | None = None, trace: bool = True) -> tuple[Any, str]:
    """One codec's iteration at a point, as every caller runs it (the rows, the verdict's
    draws, the break-even searches): DDP's buckets through
    :func:`~gradwire.iteration.iteration_spec` and the iteration timeline, or a sharded
    mode's units through :func:`gradwire.sharding.sharded_spec` and the sharded timeline.
    ``scale`` (:class:`gradwire.sharding.Scale`) multiplies the compute, encode and decode
    times (one verdict draw); ``efficiency`` replaces the network's. Returns the
    :class:`~gradwire.simulator.timeline.IterationResult` and the collective it ran."""
    from gradwire.sharding import Scale, describe, is_sharded, sharded_spec

    s = scale if scale is not None else Scale()
    key = workload_key(sc)
    wl = prepared.workloads[key]
    prof = prepared.codecs[(key, spec)]
    eff = sc.network.efficiency if efficiency is None else efficiency
    overhead = sc.network.per_message_overhead_us * 1e-6
    sum_s = prepared.sum_s.get(key)
    if is_sharded(sc):
        from gradwire.simulator.sharded import simulate_sharded

        pc = sc.sharding.param_codec
        sspec = sharded_spec(sc, wl, prof, topology, sum_s=sum_s, scale=s,
                             param_prof=prepared.codecs[(key, pc)] if pc else None)
        res = simulate_sharded(sspec, topology, per_message_overhead_s=overhead, efficiency=eff,
                               trace_transfers=4000 if trace else 0, links=trace)
        return res, describe(sspec)
    from dataclasses import replace

    from gradwire.simulator.timeline import simulate_iteration

    grp = groups if groups is not None else point_buckets(sc, wl.numels)
    buckets = bucket_inputs(prof, grp, wl.ready_s, sum_s)
    if (s.compute, s.encode, s.decode) != (1.0, 1.0, 1.0):
        buckets = [replace(b, ready_s=b.ready_s * s.compute, encode_s=b.encode_s * s.encode,
                           decode_s=b.decode_s * s.decode, sum_s=b.sum_s * s.decode) for b in buckets]
    ispec = iteration_spec(
        forward_s=wl.forward_s * s.compute, backward_s=wl.backward_s * s.compute,
        optimizer_s=wl.optimizer_s * s.compute, buckets=buckets, exchange=prof.exchange, codec=spec,
        choice=choice if choice is not None else ExchangeChoice.of(sc), p=sc.workers,
        grad_elem_bytes=GRAD_ELEM_BYTES[sc.model.dtype], overlap=sc.overlap, codec_overlap=sc.codec_overlap,
    )
    strag = stragglers if stragglers is not None else {x.rank: x.slowdown for x in sc.stragglers}
    res = simulate_iteration(ispec, topology, per_message_overhead_s=overhead, efficiency=eff,
                             stragglers=strag, jitter=sc.jitter, seed=sc.seed, trace_ranks=4 if trace else 0,
                             trace_transfers=4000 if trace else 0)
    return res, ispec.collective


def evaluate_point(point: Point, prepared: Prepared, *, traces: bool = True) -> tuple[list[Row], list[Trace]]:
    """One row (and one trace) per codec of the point; ``traces=False`` (a break-even
    step, which reads iteration times only) simulates without drawing and returns none."""
    from gradwire.sharding import is_sharded, scenario_memory

    sc = point.scenario
    wl = prepared.workloads[workload_key(sc)]
    topo = build_topology(sc)
    positions, kinds = _layout(topo)
    groups = None if is_sharded(sc) else point_buckets(sc, wl.numels)
    stragglers = {s.rank: s.slowdown for s in sc.stragglers}
    choice = ExchangeChoice.of(sc)
    mem = scenario_memory(sc, wl, topo)
    device_memory = math.nan
    if sc.model.target_device is not None:
        from gradwire.models.devices import get_device

        device_memory = float(get_device(sc.model.target_device).memory_bytes)
    rows: list[Row] = []
    drawn: list[Trace] = []
    total_numel = wl.num_params
    for spec in sc.codecs:
        prof = prepared.codecs[(workload_key(sc), spec)]
        res, collective = simulate_codec(sc, prepared, spec, topo, groups=groups, choice=choice,
                                         stragglers=stragglers, trace=traces)
        if prof.exchange.in_place:
            mean_bits = 8.0 * GRAD_ELEM_BYTES[sc.model.dtype] * total_numel
        else:
            mean_bits = sum(sum(c.nbits) / len(c.nbits) for c in prof.params)
        rows.append(Row(
            scenario=sc.name, point=point.index, point_id=point.point_id, codec=spec, codec_name=prof.name,
            model=sc.model.module or sc.model.name, batch_size=sc.model.batch_size, workers=sc.workers,
            topology=sc.cluster.topology, collective=collective, device=wl.device, seed=sc.seed,
            overlap=sc.overlap, iteration_s=res.iteration_s, compute_s=res.compute_s,
            forward_s=res.forward_s, backward_s=res.backward_s, optimizer_s=res.optimizer_s,
            encode_s=res.encode_s, decode_s=res.decode_s, comm_s=res.comm_s,
            exposed_comm_s=res.exposed_comm_s, hidden_comm_s=res.hidden_comm_s,
            bytes_per_rank=res.bytes_per_rank, bits_per_element=mean_bits / max(1, total_numel),
            compression_ratio=32 * total_numel / max(1.0, mean_bits),
            estimate=wl.estimate or prof.estimate, params=dict(point.values),
            target_device=wl.target_device, precision=wl.precision, efficiency_source=wl.efficiency_source,
            compute_source=wl.compute_source, codec_source=prof.codec_source,
            network_source="estimate (simulated network model)", uncompressed=prof.exchange.baseline,
            parallelism=sc.parallelism, model_state_bytes=mem.model_state_bytes,
            gathered_params_bytes=mem.gathered_params_bytes, device_memory_bytes=device_memory,
        ))
        if traces:  # the drawing's resolution: a lane keeps at most MAX_SEGMENTS_PER_LANE segments
            segments, resolution = coarsen_segments(res.segments)
            drawn.append(Trace(point=point.index, codec=spec, segments=segments, links=res.links,
                               positions=positions, node_kinds=kinds, resolution_s=resolution))
    from gradwire.verdict import with_verdict  # the point's verdict and its interval

    return with_verdict(point, prepared, add_speedups(rows)), drawn
