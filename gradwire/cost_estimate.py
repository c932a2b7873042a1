"""What a run will cost, estimated before it runs (``run_sim.py SCENARIO --check``).

For every distinct workload of a scenario's points, :func:`estimate_cost` traces one
training step on the ``meta`` device (:func:`gradwire.models.flops.trace_spec`: per-op
FLOPs and bytes, no arithmetic, no memory) and counts the memory a step needs the way a
profile checks it before allocating (:func:`gradwire.models.profile.memory_needed_bytes`).
Nothing of the model runs. The profiles a run makes
(:func:`gradwire.models.sources.profile_calls`) are recognised in the cache
(:func:`gradwire.models.profile.profile_is_cached`): a cached one costs about nothing.

The basis of every time, stated in the output: three rates of the device at hand,
measured once per process by tiny probes that are not the model (a 512 x 512 float32
matrix product and a 3 x 3 convolution of 64 channels for FLOP/s, a 32 MB copy for
bytes/s, a one-element add for the fixed cost of an operation). A step takes ``sum over operations of max(flops / F_class, bytes / B)
+ operations x per-op cost`` plus the optimizer's five passes over the parameters
(a roofline with the host's own rates); a profile runs warm-up plus timed steps, cut by
its 30 s time budget. Codec measurement prices each codec's declared work
(:meth:`Codec.work`) with constants built from the same rates, for the encodes that
measure payload sizes and, when codec times are measured here, the timing repeats.
Simulation is priced by :class:`SimProbe`: the points' own exchanges simulated with
stand-in times (directly up to 256 ranks, extrapolated beyond), times one run per codec
and verdict draw; the break-even searches are not priced. These are estimates for planning (a factor of two
either way is typical), not measurements.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PROBE_MATMUL_N = 512
PROBE_CONV_BATCH, PROBE_CONV_CHANNELS, PROBE_CONV_PIXELS = 8, 64, 32
PROBE_COPY_BYTES = 32 * 2**20
OPTIMIZER_BYTES_PER_PARAM = 5 * 4  # SGD with momentum: read param, grad, buffer; write param, buffer


@dataclass(frozen=True)
class HostRates:
    """Rates of the device at hand, measured by probes (not by the model)."""

    device: str
    flops_per_s: float  # matrix products
    conv_flops_per_s: float  # convolutions
    bytes_per_s: float
    op_s: float  # fixed cost of one operation (dispatch, launch)

    def basis(self) -> str:
        return (f"{self.device} probes: {self.flops_per_s / 1e9:.0f} GFLOP/s ({PROBE_MATMUL_N}x{PROBE_MATMUL_N} "
                f"matmul), {self.conv_flops_per_s / 1e9:.0f} GFLOP/s (3x3 convolution), "
                f"{self.bytes_per_s / 1e9:.1f} GB/s (copy), {self.op_s * 1e6:.1f} us per op")


def _best_of(fn: Any, repeats: int = 5) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@functools.lru_cache(maxsize=4)
def host_rates(device: str = "cpu") -> HostRates:
    """Probe the device at hand once per process (about 0.2 s)."""
    import torch

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    a = torch.ones(PROBE_MATMUL_N, PROBE_MATMUL_N, device=dev)
    mm = _best_of(lambda: (a @ a, sync()))
    buf = torch.empty(PROBE_COPY_BYTES // 4, device=dev)
    dst = torch.empty_like(buf)
    cp = _best_of(lambda: (dst.copy_(buf), sync()))
    img = torch.ones(PROBE_CONV_BATCH, PROBE_CONV_CHANNELS, PROBE_CONV_PIXELS, PROBE_CONV_PIXELS, device=dev)
    weight = torch.ones(PROBE_CONV_CHANNELS, PROBE_CONV_CHANNELS, 3, 3, device=dev)
    conv = _best_of(lambda: (torch.nn.functional.conv2d(img, weight, padding=1), sync()))
    conv_flops = 2.0 * 9 * PROBE_CONV_CHANNELS**2 * PROBE_CONV_BATCH * PROBE_CONV_PIXELS**2
    one = torch.ones(1, device=dev)
    ops = 200
    op = _best_of(lambda: ([one.add(one) for _ in range(ops)], sync())) / ops
    return HostRates(dev.type, 2.0 * PROBE_MATMUL_N**3 / mm, conv_flops / conv, 2.0 * PROBE_COPY_BYTES / cp, op)


@dataclass(frozen=True)
class WorkloadCost:
    """One distinct workload: what its profiles and codec measurements cost here."""

    label: str
    params: int
    step_flops: float
    step_s: float  # estimated seconds of one training step here
    profile_steps: int  # steps the uncached profiles run
    cached: bool  # every profile it needs is in the cache
    memory_bytes: int
    profile_s: float  # 0 when cached
    codec_s: float
    never_run: bool = False  # a meta-only model (LLM): no profile here, synthetic payloads

    @property
    def seconds(self) -> float:
        return self.profile_s + self.codec_s


@dataclass(frozen=True)
class CostEstimate:
    workloads: tuple[WorkloadCost, ...]
    points: int
    simulations: int  # points x codecs x (1 + the verdict's draws)
    simulation_s: float
    rates: HostRates
    simulation_basis: str = ""

    @property
    def seconds(self) -> float:
        return sum(w.seconds for w in self.workloads) + self.simulation_s

    @property
    def peak_memory_bytes(self) -> int:  # workloads are prepared one after another
        return max((w.memory_bytes for w in self.workloads), default=0)


def step_seconds(trace: Any, rates: HostRates) -> float:
    """Roofline of one traced training step with the host's rates (vectorized over ops)."""
    import numpy as np

    from gradwire.models.flops import CONV

    rate = np.where(trace.op_class == CONV, rates.conv_flops_per_s, rates.flops_per_s)
    per_op = np.maximum(trace.flops / rate, trace.bytes / rates.bytes_per_s)
    optimizer = OPTIMIZER_BYTES_PER_PARAM * trace.num_params / rates.bytes_per_s
    return float(per_op.sum() + len(trace.flops) * rates.op_s + optimizer)


def _profile_steps(kind: str, args: dict[str, Any], step_s: float) -> int:
    if kind == "step":
        return 1
    warmup, iters = int(args.get("warmup", 1)), int(args["iters"])
    budget = float(args.get("time_budget_s", 30.0))
    # a timed step is not started when it would end past the budget; at least one runs
    return min(warmup + iters, max(warmup + 1, math.floor(budget / max(step_s, 1e-12))))


def _codec_seconds(sc: Any, shapes: Sequence[tuple[int, ...]], rates: HostRates) -> float:
    from gradwire.codecs import make_codec
    from gradwire.codecs.cost import (
        DEFAULT_CALL_S,
        DEFAULT_VARLEN_S,
        PACK_OPS,
        REDUCE_OPS,
        RNG_OPS,
        SELECT_PASSES_BYTES,
        DeviceConstants,
        codec_seconds,
    )

    byte_s, op_s = 1.0 / rates.bytes_per_s, 1.0 / rates.flops_per_s
    host = DeviceConstants(byte_s=byte_s, launch_s=rates.op_s, call_s=DEFAULT_CALL_S, rng_s=RNG_OPS * op_s,
                           select_s=SELECT_PASSES_BYTES * byte_s, pack_s=PACK_OPS * op_s,
                           varlen_s=DEFAULT_VARLEN_S, reduce_s=REDUCE_OPS * op_s, flop_s=op_s)
    timed_here = sc.codec.costs is None and sc.model.target_device is None
    total = 0.0
    for spec in sc.codecs:
        enc, dec = codec_seconds(make_codec(spec), shapes, host)
        # payload sizes for measure.ranks ranks; host timing: repeats of encode + decode
        total += sc.measure.ranks * enc + (sc.measure.repeats * (enc + dec) if timed_here else 0.0)
    return total


SIM_PROBE_MAX_RANKS = 256  # points up to this many ranks are simulated as they are
SIM_PROBE_LOW_RANKS = 64  # ... larger ones at this and the maximum, then extrapolated
SIM_PROBE_SLOPE = (0.5, 1.5)  # the extrapolation's power of p, clamped to this range
SIM_PROBE_LIMIT = 24  # distinct probes at most; beyond, the nearest probe of the same kind


def _drop_rates(value: Any) -> Any:
    """A cluster's settings without its rates: the simulator's cost follows the structure
    (ranks, links, routes), not the speeds."""
    if isinstance(value, dict):
        return {k: _drop_rates(v) for k, v in value.items()
                if not any(w in k for w in ("bandwidth", "latency", "Gbps", "_us"))}
    if isinstance(value, list):
        return [_drop_rates(v) for v in value]
    return value


class SimProbe:
    """The simulator's cost per iteration, measured by simulating the point's own exchange.

    For each point and codec the probe runs :func:`gradwire.pipeline.simulate_codec`, the
    function the rows and the verdict's draws run, on the point's topology, buckets (DDP)
    or units (sharded modes) and collectives, with stand-in times and bytes
    (:func:`_stand_in`): the simulator's cost follows the number of collective steps, flows
    and events, not those values. Each probe runs three times on one topology, the cyclic
    collector off: the first iteration, traced as a row is, pays the route look-ups, which
    a point's later iterations (its verdict's draws, untraced) reuse, and the faster of the
    other two is the cost of a repeat. A point
    of at most ``SIM_PROBE_MAX_RANKS`` ranks is probed as it is; a larger one at
    ``SIM_PROBE_LOW_RANKS`` and ``SIM_PROBE_MAX_RANKS`` ranks (rounded to whole servers),
    extrapolated as ``p ** a`` with ``a`` the measured slope between them (the first and
    the repeated iteration each their own), clamped to ``SIM_PROBE_SLOPE``. Probes are processor seconds of this thread (a busy-waiting torch thread pool is not the simulator), cached by structure (not by rates).
    """

    def __init__(self) -> None:
        self._cache: dict[Any, tuple[float, float]] = {}
        self._by_kind: dict[Any, tuple[float, float]] = {}
        self.extrapolated = 0

    def basis(self) -> str:
        ex = f", {self.extrapolated} point-codec pair(s) extrapolated as p^a from {SIM_PROBE_LOW_RANKS} " \
             f"and {SIM_PROBE_MAX_RANKS} ranks" if self.extrapolated else ""
        return f"{len(self._cache)} probe simulation(s) of the points' own exchanges{ex}"

    def seconds(self, sc: Any, spec: str, names: Sequence[str], numels: Sequence[int], runs: int = 1) -> float:
        """Seconds for ``runs`` iterations of ``spec`` at point ``sc``: the first pays the
        route look-ups of a fresh topology, the others reuse them."""
        p = int(sc.workers)
        if p <= SIM_PROBE_MAX_RANKS:
            first, again = self._probe(sc, spec, names, numels, p)
            return first + (runs - 1) * again
        unit = int(getattr(sc.cluster, "gpus_per_server", None) or 1)
        hi = max(unit, SIM_PROBE_MAX_RANKS // unit * unit)
        lo = max(unit, SIM_PROBE_LOW_RANKS // unit * unit)
        t_hi = self._probe(sc, spec, names, numels, hi)
        if lo >= hi:
            return (t_hi[0] + (runs - 1) * t_hi[1]) * p / hi
        t_lo = self._probe(sc, spec, names, numels, lo)
        self.extrapolated += 1
        first, again = (_extrapolate(t_lo[i], t_hi[i], lo, hi, p) for i in (0, 1))
        return first + (runs - 1) * again

    def _probe(self, sc: Any, spec: str, names: Sequence[str], numels: Sequence[int],
               p: int) -> tuple[float, float]:
        """Processor seconds of a first and a second stand-in iteration on one topology."""
        import json

        from gradwire.codecs import CODECS
        from gradwire.pipeline import build_topology, simulate_codec
        from gradwire.registry import parse_spec

        codec_cls: Any = CODECS.get(parse_spec(spec)[0])
        exchange = codec_cls.exchange  # every codec class declares one (codecs/exchange.py)
        kind = (sc.parallelism, exchange.rounds, exchange.in_place, exchange.baseline, p)
        key = (kind, json.dumps(_drop_rates(sc.cluster.model_dump(mode="json")), sort_keys=True),
               json.dumps(sc.exchange.model_dump(mode="json"), sort_keys=True),
               json.dumps(sc.sharding.model_dump(mode="json"), sort_keys=True),
               sc.bucket_MB, sc.first_bucket_MB, sc.model.dtype, sc.overlap, len(numels))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if len(self._cache) >= SIM_PROBE_LIMIT and kind in self._by_kind:
            return self._by_kind[kind]
        import gc

        at = sc.model_copy(update={"workers": p})
        pc = sc.sharding.param_codec if sc.parallelism != "ddp" else None
        prep = _stand_in(at, [spec, *([pc] if pc else [])], names, numels)
        times = []
        # the cyclic collector, which a big process (torch, a traced model) makes slow,
        # would land in one probe or another: not the simulator's cost
        was = gc.isenabled()
        gc.disable()
        try:
            t0 = time.thread_time()
            topo = build_topology(at)
            for trace in (True, False, False):  # the row's iteration, then two as the draws run
                simulate_codec(at, prep, spec, topo, trace=trace)
                times.append(time.thread_time() - t0)
                t0 = time.thread_time()
        finally:
            if was:
                gc.enable()
        t = (times[0], min(times[1:]))
        self._cache[key] = t
        self._by_kind.setdefault(kind, t)
        return t


def _extrapolate(t_lo: float, t_hi: float, lo: int, hi: int, p: int) -> float:
    """``t_hi * (p / hi) ** a``, ``a`` the slope from (lo, t_lo) to (hi, t_hi) clamped."""
    a = math.log(max(t_hi, 1e-9) / max(t_lo, 1e-9)) / math.log(hi / lo)
    a = min(max(a, SIM_PROBE_SLOPE[0]), SIM_PROBE_SLOPE[1])
    return t_hi * (p / hi) ** a


_STAND_IN = {"forward_s": 0.03, "backward_s": 0.06, "optimizer_s": 0.002, "codec_s": 1e-4}


def _stand_in(sc: Any, specs: Sequence[str], names: Sequence[str], numels: Sequence[int]) -> Any:
    """A :class:`~gradwire.pipeline.Prepared` of stand-in numbers for ``sc``'s workload and
    ``specs``: the ``_STAND_IN`` times spread over the parameters by size, gradients ready
    evenly through backward, payloads of a cast's 16 bits or an encoded 4 bits per element
    (a codec's own bits only change the bytes, not the simulator's work)."""
    from gradwire.codecs import CODECS
    from gradwire.pipeline import CodecProfile, ParamCost, Prepared, WorkloadSummary, workload_key
    from gradwire.registry import parse_spec

    key = workload_key(sc)
    total = max(1, sum(numels))
    n = len(numels)
    ready = tuple(_STAND_IN["backward_s"] * (i + 1) / n for i in range(n))
    wl = WorkloadSummary(sc.model.name, sc.model.batch_size, "stand-in", _STAND_IN["forward_s"],
                         _STAND_IN["backward_s"], _STAND_IN["optimizer_s"], tuple(numels), ready,
                         tuple(names), True, "stand-in")
    prep = Prepared(workloads={key: wl})
    for spec in specs:
        name = parse_spec(spec)[0]
        codec_cls: Any = CODECS.get(name)
        ex = codec_cls.exchange  # every codec class declares one (codecs/exchange.py)
        bits_per_elem = 16 if ex.baseline else 4
        params = []
        for numel in numels:
            bits = numel * bits_per_elem
            share = _STAND_IN["codec_s"] * numel / total
            split = ((bits // len(ex.rounds),) * len(ex.rounds),) if len(ex.rounds) > 1 else ()
            params.append(ParamCost(numel, (bits,), share, share, split))
        prep.codecs[(key, spec)] = CodecProfile(spec, name, ex.summable, tuple(params), exchange=ex)
    return prep


def estimate_cost(points: Sequence[Any], *, device: str | None = None) -> CostEstimate:
    """The cost of running ``points`` (from :func:`gradwire.scenarios.loader.expand`) here."""
    from gradwire.models.flops import trace_spec
    from gradwire.models.profile import memory_needed_bytes, profile_is_cached
    from gradwire.models.sources import profile_calls, scenario_spec
    from gradwire.pipeline import _device, workload_key

    first = points[0].scenario if points else None
    dev = device or (_device(first) if first is not None else "cpu")
    rates = host_rates(dev)
    seen: dict[str, Any] = {}
    for pt in points:
        seen.setdefault(workload_key(pt.scenario), pt.scenario)
    works: list[WorkloadCost] = []
    numels: dict[str, list[int]] = {}
    names: dict[str, list[str]] = {}
    for key, sc in seen.items():
        m = sc.model
        spec = scenario_spec(m)
        trace = trace_spec(spec, m.batch_size, seed=sc.seed)
        numels[key] = [math.prod(s) for _, s in trace.params]
        names[key] = [n for n, _ in trace.params]
        step = step_seconds(trace, rates)
        calls = profile_calls(sc, dev)
        cold = [(kind, args) for kind, args in calls if not profile_is_cached(spec, m.batch_size, **args)]
        steps = sum(_profile_steps(kind, args, step) for kind, args in cold)
        where = f" on {m.target_device} (estimate)" if m.target_device else ""
        shapes = [s for _, s in trace.params]
        if spec.meta_only:  # the codecs encode synthetic samples of each distinct shape
            from gradwire.llm_codecs import encoded_shapes

            shapes = encoded_shapes(shapes)
            memory = 2 * 4 * max(math.prod(s) for s in shapes)  # a float32 sample and its payload
        else:
            memory = memory_needed_bytes(spec, m.batch_size, device=dev, dtype=m.dtype)
        works.append(WorkloadCost(
            label=f"{m.module or m.name} batch {m.batch_size}{where}", params=trace.num_params,
            step_flops=trace.total_flops(), step_s=step, profile_steps=steps, cached=not cold,
            memory_bytes=memory, profile_s=steps * step, codec_s=_codec_seconds(sc, shapes, rates),
            never_run=spec.meta_only))
    sims = 0
    sim_s = 0.0
    probe = SimProbe()
    for pt in points:
        sc = pt.scenario
        runs = 1 + (sc.verdict.draws if sc.verdict.enabled else 0)  # the verdict re-simulates per draw
        key = workload_key(sc)
        for spec in sc.codecs:
            sim_s += probe.seconds(sc, spec, names[key], numels[key], runs)
        sims += runs * len(sc.codecs)
    return CostEstimate(tuple(works), len(points), sims, sim_s, rates, probe.basis())


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _secs(s: float) -> str:
    return f"{s:.2g} s" if s < 60 else f"{s / 60:.1f} min"


def format_cost(est: CostEstimate) -> list[str]:
    """Lines for the terminal: one per workload, then simulation and the total."""
    lines = [f"Estimated cost of the run (nothing run; basis: {est.rates.basis()}):"]
    for w in est.workloads:
        prof = "profile cached (~0 s)" if w.cached else f"{w.profile_steps} step(s) x {_secs(w.step_s)}"
        if w.never_run:
            prof = "never run here (meta device; synthetic codec payloads)"
        lines.append(f"  {w.label}: {w.params / 1e6:.1f}M parameters, {w.step_flops / 1e9:.3g} GFLOP per step; "
                     f"{prof}; codecs ~{_secs(w.codec_s)}; memory ~{_gb(w.memory_bytes)}")
    lines.append(f"  simulation: {est.points} point(s) x codecs x (1 + verdict draws) = {est.simulations} "
                 f"iteration(s), ~{_secs(est.simulation_s)} ({est.simulation_basis})")
    lines.append(f"  total ~{_secs(est.seconds)}, peak memory ~{_gb(est.peak_memory_bytes)} "
                 "(workloads are prepared one after another)")
    return lines
