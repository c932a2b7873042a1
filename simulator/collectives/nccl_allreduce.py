"""NCCL's allreduce: ring or pipelined double binary tree, over channels, in a protocol.

``algorithm`` (``"auto"``, ``"ring"``, ``"tree"``) and ``protocol`` (``"auto"``, ``"ll"``,
``"ll128"``, ``"simple"``) force NCCL's choice (``NCCL_ALGO``/``NCCL_PROTO``); ``"auto"``
takes what NCCL's tuning model predicts fastest for the buffer on these ranks
(:func:`gradwire.simulator.nccl.choose`). ``channels`` (0: NCCL's default for the
layout) splits the buffer over that many rings or tree pairs at once; ``chunk_bytes`` is
the tree pipeline's chunk. ``ll128`` (None: NCCL's default for ``gpu``) allows or forbids
LL128: NCCL enables it by default only on GPUs of compute capability 7.0, 8.0 and 9.0
(:func:`gradwire.simulator.nccl.ll128_default`; ``gpu`` None: enabled), and forcing
``protocol="ll128"`` enables it anywhere, as ``NCCL_PROTO=LL128`` does. A scenario's
``exchange.algorithm`` and ``exchange.protocol`` arrive here as these options, and its
``model.target_device`` as ``gpu``.

Ring: each channel a ring (:func:`~gradwire.simulator.nccl.ring_orders`), all channels in
one lock-step batch per step, 2(p-1) steps of ``M/(k·p)`` payload bytes per rank and
channel. Tree: per channel two trees each carrying ``M/(2k)`` in chunks, reduce and
broadcast overlapped in one lock-step pipeline
(:func:`~gradwire.simulator.nccl.tree_schedule`). A protocol sends ``1/fraction`` wire
bytes per payload byte and adds its latency: NCCL's base latency once, then, for the
ring, the per-step share of its hop latencies (a step's chunk moves one hop of the
pipeline); for the trees the hop latencies along twice the depth once, before the
pipeline (the tree's per-chunk cost is in its bandwidth fraction, as in NCCL's model).
Route latencies and per-message overheads of the network come on top, per step.

LL delivers no more than NCCL's cap on its bandwidth (``llMaxBws``: by GPU generation on one
node, by the host ``cpu``'s vendor across nodes; :func:`gradwire.simulator.nccl.ll_max_bus_Bps`):
the collective ends no sooner than ``latency + M / cap``. ``latency_us`` (protocol ->
microseconds) is a system's own latency per operation beyond NCCL's model (host launch,
the network transport), paid once before the schedule; the system profiles of
``nccl_profiles.yaml`` carry it, with how it was obtained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradwire.errors import ConfigError
from gradwire.simulator import nccl
from gradwire.simulator.collectives.base import CollectiveProcess, check_args, collective
from gradwire.simulator.network import Network
from gradwire.simulator.topology import Topology

FIELD = "exchange.summable_options"


def option_problems(opts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(option, problem)`` for every bad value among ``opts`` (the scenario check)."""
    out = []
    algorithm = opts.get("algorithm", "auto")
    protocol = opts.get("protocol", "auto")
    channels = opts.get("channels", 0)
    chunk_bytes = opts.get("chunk_bytes", nccl.DEFAULT_CHUNK_BYTES)
    if algorithm not in ("auto", *nccl.ALGORITHMS):
        out.append(("algorithm", f"nccl_allreduce takes auto, {', '.join(nccl.ALGORITHMS)}; got {algorithm!r}"))
    if protocol not in ("auto", *nccl.PROTOCOLS):
        out.append(("protocol", f"nccl_allreduce takes auto, {', '.join(nccl.PROTOCOLS)}; got {protocol!r}"))
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 0:
        out.append(("channels", f"must be an integer >= 1 (0: NCCL's default), got {channels!r}"))
    if (isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, (int, float))
            or not math.isfinite(chunk_bytes) or chunk_bytes <= 0):
        out.append(("chunk_bytes", f"must be a number of bytes > 0, got {chunk_bytes!r}"))
    ll128 = opts.get("ll128")
    if ll128 is not None and not isinstance(ll128, bool):
        out.append(("ll128", f"must be true or false (or left out: NCCL's default for the GPU), got {ll128!r}"))
    elif ll128 is False and protocol == "ll128":
        out.append(("protocol", "ll128 is disabled here (ll128: false); use ll or simple"))
    gpu = opts.get("gpu")
    if gpu is not None:
        try:
            nccl.compute_capability(gpu)
        except ConfigError as exc:
            out.append(("gpu", str(exc)))
    cpu = opts.get("cpu", "intel")
    if cpu not in nccl.CPU_VENDORS:
        out.append(("cpu", f"the host CPU's vendor sets LL's cap across nodes: {', '.join(nccl.CPU_VENDORS)}; "
                           f"got {cpu!r}"))
    lat = opts.get("latency_us")
    if lat is not None and (not isinstance(lat, Mapping) or any(
            q not in nccl.PROTOCOLS or isinstance(v, bool) or not isinstance(v, (int, float))
            or not math.isfinite(v) or v < 0 for q, v in lat.items())):
        out.append(("latency_us", f"a mapping of protocol ({', '.join(nccl.PROTOCOLS)}) to microseconds >= 0, "
                                  f"got {lat!r}"))
    return out


def describe_options(opts: Mapping[str, Any]) -> str:
    """What the options make NCCL do, for ``run_sim.py --check``."""
    algorithm = opts.get("algorithm", "auto")
    protocol = opts.get("protocol", "auto")
    gpu = opts.get("gpu")
    ll128 = resolve_ll128(opts.get("ll128"), protocol, gpu)
    if opts.get("ll128") is not None:
        why = "ll128 option"
    elif protocol == "ll128":
        why = "forced by protocol ll128"
    elif gpu is None:
        why = "NCCL's default; no model.target_device, an NVLink GPU assumed"
    else:
        why = f"NCCL's default on {gpu}, compute capability {nccl.compute_capability(gpu) / 10:.1f}"
    return (f"algorithm {algorithm}, protocol {protocol}"
            f"{' (NCCL tuning model picks per buffer)' if 'auto' in (algorithm, protocol) else ''}; "
            f"LL128 {'enabled' if ll128 else 'disabled'} ({why})")


def resolve_ll128(ll128: bool | None, protocol: str, gpu: str | None) -> bool:
    """Whether LL128 may run: the ``ll128`` option if given, else enabled when forced by
    ``protocol``, else NCCL's default for ``gpu``."""
    if ll128 is not None:
        return bool(ll128)
    return protocol == "ll128" or nccl.ll128_default(gpu)


def check_nccl_options(algorithm: Any, protocol: Any, channels: Any, chunk_bytes: Any,
                       ll128: Any = None, gpu: Any = None, cpu: Any = "intel", latency_us: Any = None) -> None:
    """A :class:`ConfigError` naming the first bad option and its valid values."""
    bad = option_problems({"algorithm": algorithm, "protocol": protocol, "channels": channels,
                           "chunk_bytes": chunk_bytes, "ll128": ll128, "gpu": gpu, "cpu": cpu,
                           "latency_us": latency_us})
    if bad:
        opt, msg = bad[0]
        raise ConfigError(f"{FIELD}.{opt}: {msg}")


def plan(topology: Topology, ranks: np.ndarray, nbytes: float, efficiency: float, *,
         algorithm: str, protocol: str, channels: int, ll128: bool | None, gpu: str | None = None,
         cpu: str = "intel", latency_us: Mapping[str, float] | None = None
         ) -> tuple[nccl.Layout, str, str, int]:
    """(layout, algorithm, protocol, channels) this allreduce runs with."""
    if ll128 is False and protocol == "ll128":
        raise ConfigError(f"{FIELD}.protocol: ll128 is disabled here (ll128: false); use ll or simple")
    ll128 = resolve_ll128(ll128, protocol, gpu)
    layout = nccl.layout_of(topology, ranks, efficiency=efficiency, ll128=ll128, gpu=gpu, cpu=cpu,
                            extra_latency_us=latency_us)
    alg, proto = nccl.choose(nbytes, layout, algorithm=algorithm, protocol=protocol)
    k = channels if channels > 0 else nccl.default_channels(layout)
    return layout, alg, proto, k


def _flat_alpha_beta(topology: Topology, src: np.ndarray, dst: np.ndarray, overhead_s: float,
                     efficiency: float) -> tuple[float, float]:
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    alpha = max(topology.route_latency_s(a, b) for a, b in pairs) + overhead_s
    bw = min(topology.route_bandwidth_Bps(a, b) for a, b in pairs) * efficiency
    return alpha, bw


def cf_nccl_allreduce(topo: Topology, rk: list[int], sz: list[float], ov: float, eff: float,
                      opts: dict[str, Any]) -> float:
    """Closed form on a network where every rank has its own full-duplex link of bandwidth
    B into a non-blocking switch (exact there): the ring's 2(p-1) steps each cost
    ``alpha + lat_step + M/(p·f·B)`` (a rank's link carries one chunk per channel); a tree
    step costs ``alpha + n_t·c/(f·B)`` with n_t the most flows any rank sends or receives
    in step t and c the chunk; plus the protocol latency and the system's own latency;
    for LL at least its time under NCCL's cap."""
    r = np.asarray(rk, dtype=np.int64)
    m = float(max(sz))
    if len(r) <= 1:
        return 0.0
    algorithm = opts.get("algorithm", "auto")
    protocol = opts.get("protocol", "auto")
    channels = int(opts.get("channels", 0))
    chunk = float(opts.get("chunk_bytes", nccl.DEFAULT_CHUNK_BYTES))
    cpu = opts.get("cpu", "intel")
    check_nccl_options(algorithm, protocol, channels, chunk, opts.get("ll128"), opts.get("gpu"), cpu,
                       opts.get("latency_us"))
    layout, alg, proto, k = plan(topo, r, m, eff, algorithm=algorithm, protocol=protocol,
                                 channels=channels, ll128=opts.get("ll128"), gpu=opts.get("gpu"), cpu=cpu,
                                 latency_us=opts.get("latency_us"))
    return max(_ll_floor_s(alg, proto, m, layout),
               nccl.extra_latency_s(proto, layout) + _cf_schedule(topo, layout, alg, proto, k, m, chunk, ov, eff))


def _cf_schedule(topo: Topology, layout: nccl.Layout, alg: str, proto: str, k: int, m: float,
                 chunk: float, ov: float, eff: float) -> float:
    f = nccl.fraction(alg, proto, layout)
    lat = nccl.latency_s(alg, proto, layout)
    base = nccl.BASE_LATENCY_US[alg][proto] * 1e-6
    p = layout.p
    if alg == "ring":
        orders = nccl.ring_orders(layout.grid, k)
        src, dst = orders.ravel(), np.roll(orders, -1, axis=1).ravel()
        alpha, bw = _flat_alpha_beta(topo, src, dst, ov, eff)
        steps = 2 * (p - 1)
        return base + steps * (alpha + (lat - base) / steps + m / (p * f * bw))
    per_tree = m / (2 * k)
    c = nccl.tree_chunks(per_tree, chunk)
    wire = per_tree / c / f
    total = lat
    for step in nccl.tree_plan_of(layout.grid, k, c)[1]:
        alpha, bw = _flat_alpha_beta(topo, step.src, step.dst, ov, eff)
        n_out = np.bincount(step.src).max()
        n_in = np.bincount(step.dst).max()
        total += alpha + max(n_out, n_in) * wire / bw
    return float(total)


@collective("nccl_allreduce", carries="sum", closed_form=cf_nccl_allreduce, check_values=option_problems,
            describe=describe_options)
def nccl_allreduce(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                   algorithm: str = "auto", protocol: str = "auto", channels: int = 0,
                   chunk_bytes: float = nccl.DEFAULT_CHUNK_BYTES, ll128: bool | None = None,
                   gpu: str | None = None, cpu: str = "intel", latency_us: Mapping[str, float] | None = None,
                   tag: str = "nccl_allreduce") -> CollectiveProcess:
    """NCCL allreduce of ``max(sizes)`` bytes per rank (see the module docstring)."""
    check_nccl_options(algorithm, protocol, channels, chunk_bytes, ll128, gpu, cpu, latency_us)
    r, s = check_args(net, ranks, sizes, "nccl_allreduce")
    if len(r) == 1:
        return
    m = float(s.max())
    layout, alg, proto, k = plan(net.topology, r, m, net.efficiency, algorithm=algorithm,
                                 protocol=protocol, channels=channels, ll128=ll128, gpu=gpu, cpu=cpu,
                                 latency_us=latency_us)
    env = net.env
    # LL delivers no more than NCCL's cap: the collective ends no sooner than that allows
    floor_s = _ll_floor_s(alg, proto, m, layout)
    floor = env.timeout(floor_s) if floor_s > 0 else None
    extra = nccl.extra_latency_s(proto, layout)
    if extra > 0:
        yield env.timeout(extra)
    yield from _schedule(net, layout, alg, proto, k, m, float(chunk_bytes), f"{tag}:{alg}/{proto}")
    if floor is not None:
        yield floor


def _ll_floor_s(alg: str, proto: str, m: float, layout: nccl.Layout) -> float:
    """LL's shortest time under NCCL's cap on its bandwidth (0 for the other protocols)."""
    if proto != "ll":
        return 0.0
    return (nccl.extra_latency_s(proto, layout) + nccl.latency_s(alg, proto, layout)
            + m / nccl.ll_cap_Bps(alg, layout))


def _schedule(net: Network, layout: nccl.Layout, alg: str, proto: str, k: int, m: float,
              chunk_bytes: float, tg: str) -> CollectiveProcess:
    """The transfers of the ring or the pipelined trees, with the protocol's latency."""
    f = nccl.fraction(alg, proto, layout)
    lat = nccl.latency_s(alg, proto, layout)
    base = nccl.BASE_LATENCY_US[alg][proto] * 1e-6
    env = net.env
    p = layout.p
    if alg == "ring":
        if base > 0:
            yield env.timeout(base)
        orders = nccl.ring_orders(layout.grid, k)
        src, dst = orders.ravel(), np.roll(orders, -1, axis=1).ravel()
        steps = 2 * (p - 1)
        hop = (lat - base) / steps
        wire = m / (k * p) / f
        src.flags.writeable = False
        dst.flags.writeable = False
        yield net.transfers(src, dst, wire, f"{tg}:", repeat=steps, gap_s=hop)
        if hop > 0:
            yield env.timeout(hop)
        return
    if lat > 0:
        yield env.timeout(lat)
    per_tree = m / (2 * k)
    c = nccl.tree_chunks(per_tree, chunk_bytes)
    wire = per_tree / c / f
    edges, sched = nccl.tree_plan_of(layout.grid, k, c)
    # runs of identical steps (the pipeline's steady state) go out as one repeated batch
    i = 0
    while i < len(sched):
        j = i + 1
        while (j < len(sched) and np.array_equal(sched[j].idx, sched[i].idx)):
            j += 1
        step = sched[i]
        net.cut_pattern(edges.src, edges.dst, step.idx)
        step.src.flags.writeable = False
        step.dst.flags.writeable = False
        yield net.transfers(step.src, step.dst, wire, f"{tg}:{i}.", repeat=j - i)
        i = j
