"""NCCL's allreduce algorithms, protocols and tuning model, for :mod:`.collectives.nccl_allreduce`.

NCCL runs an allreduce as one of two algorithms over several *channels* (independent
rings or trees, each carrying its share of the buffer) with one of three *protocols*:

- **Simple**: bulk copies with a memory fence per step; full bandwidth, the highest
  per-hop latency.
- **LL** (low latency): 8-byte stores of 4 data bytes and a 4-byte flag, so no fence is
  needed; the lowest latency, a fraction of the bandwidth.
- **LL128**: 128-byte lines of 120 data bytes and an 8-byte flag; close to Simple's
  bandwidth at a latency between the two (enabled on NVLink GPUs only).

The constants are NCCL's own tuning model (``src/graph/tuning.cc``, NCCL 2.18-2.21:
``baseLat``, ``hwLat`` and the per-algorithm/protocol bandwidth refinements of
``ncclTopoTuneModel``), quoted with their source in docs/simulator.md. NCCL picks the
(algorithm, protocol) pair whose predicted time ``latency + bytes / algorithm bandwidth``
is smallest; :func:`choose` does the same on the layout read off a topology.

Channel layout (:func:`ring_orders`, :func:`tree_channels`): ranks are grouped by server
(the topology's ``servers``; without them every rank is its own server). Channel c's ring
visits every server in order, entering each at local GPU ``c mod g`` and walking the
server's GPUs from there, so consecutive channels leave and enter servers through
different GPUs, hence (with the D-mod-k routing of the ``servers`` topology) through
different NICs. Channel c's trees chain a server's GPUs from that same GPU (the chain's
head talks to other servers) and join the servers by NCCL's double binary tree: tree 0
heap-ordered over the servers, tree 1 over the servers in reverse order, so that the
leaves of one are the inner nodes of the other; each tree carries half of the channel's
share.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gradwire.errors import ConfigError
from gradwire.simulator.topology import Topology

ALGORITHMS: tuple[str, ...] = ("ring", "tree")
PROTOCOLS: tuple[str, ...] = ("ll", "ll128", "simple")

# NCCL tuning.cc: baseLat[algorithm][protocol], microseconds (LL, LL128, Simple)
BASE_LATENCY_US: dict[str, dict[str, float]] = {
    "tree": {"ll": 6.8, "ll128": 14.0, "simple": 0.0},
    "ring": {"ll": 6.6, "ll128": 14.0, "simple": 8.4},
}
# NCCL tuning.cc: hwLat[hardware][algorithm][protocol], microseconds per hop
HOP_LATENCY_US: dict[str, dict[str, dict[str, float]]] = {
    "nvlink": {"tree": {"ll": 0.6, "ll128": 1.25, "simple": 4.0},
               "ring": {"ll": 0.6, "ll128": 1.9, "simple": 3.4}},
    "pci": {"tree": {"ll": 1.0, "ll128": 1.9, "simple": 6.0},
            "ring": {"ll": 1.0, "ll128": 2.5, "simple": 5.7}},
    "net": {"tree": {"ll": 5.0, "ll128": 8.5, "simple": 14.0},
            "ring": {"ll": 2.7, "ll128": 4.0, "simple": 14.0}},
}
# Fraction of the links' bandwidth each (algorithm, protocol) delivers as payload: NCCL
# tuning.cc's refinements of busBw -- ring LL x1/4, ring LL128 x0.92, tree allreduce x0.92
# and then LL x1/3.8, LL128 x120/128 (multi-node; 7/9 on one node).
BANDWIDTH_FRACTION: dict[str, dict[str, float]] = {
    "ring": {"ll": 0.25, "ll128": 0.92, "simple": 1.0},
    "tree": {"ll": 0.92 / 3.8, "ll128": 0.92 * 120 / 128, "simple": 0.92},
}
TREE_LL128_ONE_NODE_FRACTION = 0.92 * 7 / 9
# NCCL tuning.cc (2.19-2.21) llMaxBws[index1][index2], GB/s of bus bandwidth: the most LL
# delivers. index2 by node count (1, 2, more); index1 on one node by GPU generation
# (Volta, Ampere, Hopper), across nodes by the host CPU's vendor (Intel, AMD).
LL_MAX_BUS_GBPS_ONE_NODE: dict[str, float] = {"volta": 39.0, "ampere": 87.7, "hopper": 87.7}
LL_MAX_BUS_GBPS_NODES: dict[str, tuple[float, float]] = {"intel": (39.0, 20.4), "amd": (22.5, 19.0)}
CPU_VENDORS: tuple[str, ...] = ("intel", "amd")

# Compute capability of the GPUs of models/devices.yaml (NVIDIA's CUDA GPU table,
# developer.nvidia.com/cuda-gpus): LL128's default depends on it (:func:`ll128_default`).
COMPUTE_CAPABILITY: dict[str, int] = {
    "K80": 37, "P100": 60, "V100": 70, "V100-16GB": 70, "A100-40GB": 80, "A100": 80,
    "H100": 90, "H200": 90,
}
# NCCL 2.19-2.21 src/graph/tuning.cc (ncclTopoTuneModel): LL128 is enabled by default only
# when every GPU has the same compute capability and it is 7.0 (Volta), 8.0 (Ampere) or
# 9.0 (Hopper), over NVLink inside a node ("Other cases are not tested and may cause silent
# data corruption"); NCCL_PROTO=LL128 enables it anywhere.
LL128_COMPUTE_CAPABILITIES = frozenset({70, 80, 90})

# NCCL's default step buffer: 4 MiB per channel in NCCL_STEPS = 8 slots (Simple)
DEFAULT_CHUNK_BYTES = 512 * 1024
# The lock-step tree pipeline runs at most this many chunks per tree; larger buffers use
# proportionally larger chunks (the fill, 2H-1 steps, stays under 2H/1024 of the time).
MAX_TREE_CHUNKS = 1024


@dataclass(frozen=True)
class Layout:
    """The ranks of one collective as NCCL sees them: an (S, g) grid of S servers of g GPUs,
    the payload bandwidth of a GPU's link into its server (bytes/s), the total NIC
    bandwidth of a server (bytes/s, inf on one server), NICs per server, the hardware of
    intra-server hops (``"nvlink"`` or ``"pci"``), whether LL128 may run, LL's bus bandwidth
    cap and the system's own latency per protocol on top of NCCL's model."""

    grid: np.ndarray
    gpu_Bps: float
    server_net_Bps: float
    nics: int
    intra_hw: str = "nvlink"
    ll128: bool = True
    ll_max_bus_Bps: float = math.inf  # LL's bus bandwidth cap (:func:`ll_max_bus_Bps`)
    # the system's latency per protocol beyond NCCL's model (seconds; host launch, transport)
    extra_latency_s: tuple[tuple[str, float], ...] = ()

    @property
    def servers(self) -> int:
        return int(self.grid.shape[0])

    @property
    def gpus_per_server(self) -> int:
        return int(self.grid.shape[1])

    @property
    def p(self) -> int:
        return int(self.grid.size)


def grid_of(servers: Sequence[Sequence[int]] | None, ranks: np.ndarray, who: str) -> np.ndarray:
    """``ranks`` grouped per server as an (S, g) array in the order of ``ranks`` (one rank
    per server when ``servers`` is None); unequal servers are a :class:`ConfigError`."""
    if servers is None:
        return ranks.reshape(-1, 1).copy()
    where = {r: s for s, members in enumerate(servers) for r in members}
    groups: dict[int, list[int]] = {}
    for r in ranks.tolist():
        groups.setdefault(where[r], []).append(r)
    counts = sorted({len(v) for v in groups.values()})
    if len(counts) != 1:
        raise ConfigError(f"{who} needs the same number of ranks on every server, got "
                          f"{sorted(len(v) for v in groups.values())}")
    return np.array(list(groups.values()), dtype=np.int64)


def default_channels(layout: Layout) -> int:
    """NCCL's default channel count: two channels per NIC a server's GPUs use across
    servers (NCCL's search finds one ring per NIC and duplicates it), at least two; on one
    server two per GPU-switch port pair, i.e. 2 (rings over NVSwitch all share the same
    GPU links, so more channels add no bandwidth in the flow model)."""
    if layout.servers <= 1:
        return 2
    return max(2, 2 * min(layout.nics, layout.gpus_per_server))


# ---------------------------------------------------------------------- channel layout
def ring_orders(grid: np.ndarray, channels: int) -> np.ndarray:
    """(channels, p) ranks in ring order: channel c enters every server at local GPU
    ``c mod g`` and walks its GPUs cyclically from there, servers in order."""
    s_, g = grid.shape
    out = np.empty((channels, s_ * g), dtype=np.int64)
    for c in range(channels):
        out[c] = np.roll(grid, -(c % g), axis=1).ravel()
    return out


@dataclass(frozen=True)
class Tree:
    """One tree over ranks: ``parent[i]`` (-1 for the root) and ``height[i]`` (0 for a
    leaf), indexed like ``nodes``; ``depth[i]`` from the root."""

    nodes: np.ndarray
    parent: np.ndarray
    height: np.ndarray
    depth: np.ndarray


def _tree(grid: np.ndarray, server_order: np.ndarray, head: int) -> Tree:
    """Servers heap-ordered by ``server_order`` (children 2i+1, 2i+2), each server a chain
    of its GPUs starting at local GPU ``head``; the chain heads form the server tree."""
    g = grid.shape[1]
    local = np.roll(np.arange(g), -head)
    nodes = grid.ravel()
    pos = {int(r): i for i, r in enumerate(nodes.tolist())}
    parent = np.full(len(nodes), -1, dtype=np.int64)
    for k, srv in enumerate(server_order.tolist()):
        chain = [pos[int(grid[srv, j])] for j in local.tolist()]
        for a, b in itertools.pairwise(chain):
            parent[b] = a
        if k > 0:
            up_srv = int(server_order[(k - 1) // 2])
            parent[chain[0]] = pos[int(grid[up_srv, local[0]])]
    depth = np.zeros(len(nodes), dtype=np.int64)
    order = _topological(parent)
    for i in order:
        if parent[i] >= 0:
            depth[i] = depth[parent[i]] + 1
    height = np.zeros(len(nodes), dtype=np.int64)
    for i in reversed(order):
        if parent[i] >= 0:
            height[parent[i]] = max(height[parent[i]], height[i] + 1)
    return Tree(nodes, parent, height, depth)


def _topological(parent: np.ndarray) -> list[int]:
    """Node indices, every parent before its children."""
    children: dict[int, list[int]] = {}
    roots = []
    for i, par in enumerate(parent.tolist()):
        if par < 0:
            roots.append(i)
        else:
            children.setdefault(par, []).append(i)
    out: list[int] = []
    stack = roots[::-1]
    while stack:
        i = stack.pop()
        out.append(i)
        stack.extend(children.get(i, [])[::-1])
    return out


def tree_channels(grid: np.ndarray, channels: int) -> list[Tree]:
    """Two trees per channel (NCCL's double binary tree), chains headed at local GPU
    ``c mod g`` (tree 0) and ``(c + g/2) mod g`` (tree 1, so its server traffic leaves
    through another GPU and NIC)."""
    s_, g = grid.shape
    fwd = np.arange(s_)
    out = []
    for c in range(channels):
        out.append(_tree(grid, fwd, c % g))
        out.append(_tree(grid, fwd[::-1].copy(), (c + g // 2) % g))
    return out


@dataclass(frozen=True)
class TreeStep:
    """Flows of one lock-step of the pipelined trees: sources and destinations (ranks),
    and ``idx``, their positions in the schedule's :class:`TreeEdges` (one entry per tree
    edge and direction), so a step's routes can be cut from the edges' routes."""

    src: np.ndarray
    dst: np.ndarray
    idx: np.ndarray


@dataclass(frozen=True)
class TreeEdges:
    """Every (tree, edge, direction) of a schedule as one flow: up then down, read-only."""

    src: np.ndarray
    dst: np.ndarray


def tree_schedule(trees: Sequence[Tree], chunks: int) -> list[TreeStep]:
    """The lock-step pipeline of ``chunks`` chunks on every tree at once, reduce and
    broadcast overlapped: node v sends chunk j up at step ``j + height(v)`` (its children
    sent chunk j one step or more before), the root holds chunk j reduced after step
    ``j + H - 1`` (H its height), and a node at depth d forwards chunk j to its children at
    step ``j + H + d``. All trees share the step count ``chunks + 2·max(H) - 1``."""
    return tree_plan(trees, chunks)[1]


def tree_plan(trees: Sequence[Tree], chunks: int) -> tuple[TreeEdges, list[TreeStep]]:
    """:func:`tree_schedule` with the edges its steps index into."""
    H = max(int(t.height.max()) for t in trees)
    n_steps = chunks + 2 * H - 1 if H > 0 else 0
    up_src: list[np.ndarray] = []
    up_dst: list[np.ndarray] = []
    up_t: list[np.ndarray] = []
    dn_src: list[np.ndarray] = []
    dn_dst: list[np.ndarray] = []
    dn_t: list[np.ndarray] = []
    for t in trees:
        child = np.flatnonzero(t.parent >= 0)
        up_src.append(t.nodes[child])
        up_dst.append(t.nodes[t.parent[child]])
        up_t.append(t.height[child])
        dn_src.append(t.nodes[t.parent[child]])
        dn_dst.append(t.nodes[child])
        # the parent (depth d-1) forwards at step j + H + d - 1
        dn_t.append(H + t.depth[child] - 1)
    src = np.concatenate(up_src + dn_src)
    dst = np.concatenate(up_dst + dn_dst)
    t0 = np.concatenate(up_t + dn_t)
    src.flags.writeable = False
    dst.flags.writeable = False
    steps = []
    for k in range(n_steps):
        idx = np.flatnonzero((t0 <= k) & (k < t0 + chunks))
        steps.append(TreeStep(src[idx], dst[idx], idx))
    return TreeEdges(src, dst), steps


_PLANS: dict[tuple[bytes, tuple[int, ...], int, int], tuple[TreeEdges, list[TreeStep]]] = {}


def tree_plan_of(grid: np.ndarray, channels: int, chunks: int) -> tuple[TreeEdges, list[TreeStep]]:
    """:func:`tree_plan` of :func:`tree_channels` ``(grid, channels)``, kept for the next
    bucket of the same ranks (the plan is a pure function of its arguments)."""
    key = (grid.tobytes(), grid.shape, channels, chunks)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 64:
            _PLANS.clear()
        plan = tree_plan(tree_channels(grid, channels), chunks)
        _PLANS[key] = plan
    return plan


def tree_chunks(nbytes_per_tree: float, chunk_bytes: float) -> int:
    """Chunks per tree: ``ceil(bytes / chunk_bytes)``, at most :data:`MAX_TREE_CHUNKS`."""
    if nbytes_per_tree <= 0:
        return 1
    return int(min(MAX_TREE_CHUNKS, max(1, math.ceil(nbytes_per_tree / chunk_bytes))))


# ---------------------------------------------------------------------- tuning model
def fraction(algorithm: str, protocol: str, layout: Layout) -> float:
    """Payload fraction of link bandwidth of ``(algorithm, protocol)`` on ``layout``."""
    if algorithm == "tree" and protocol == "ll128" and layout.servers == 1:
        return TREE_LL128_ONE_NODE_FRACTION
    return BANDWIDTH_FRACTION[algorithm][protocol]


def latency_s(algorithm: str, protocol: str, layout: Layout) -> float:
    """NCCL's latency of an allreduce (seconds): ``baseLat`` plus, for the ring, the
    2(p-1) steps of which 2S cross servers (NET hops) and the rest intra-server; for the trees twice the depth, (g-1) intra hops
    and log2(S) network hops."""
    s_, g, p = layout.servers, layout.gpus_per_server, layout.p
    intra = HOP_LATENCY_US[layout.intra_hw][algorithm][protocol]
    inter = HOP_LATENCY_US["net"][algorithm][protocol]
    base = BASE_LATENCY_US[algorithm][protocol]
    if algorithm == "ring":
        steps = 2 * (p - 1)
        n_inter = 2 * s_ if s_ > 1 else 0
        n_inter = min(n_inter, steps)
        us = base + (steps - n_inter) * intra + n_inter * inter
    else:
        us = base + 2 * ((g - 1) * intra + (math.log2(s_) * inter if s_ > 1 else 0.0))
    return us * 1e-6


def algorithm_Bps(algorithm: str, protocol: str, layout: Layout) -> float:
    """Algorithm bandwidth (buffer bytes per second) of ``(algorithm, protocol)``.

    Ring: every rank sends 2(p-1)/p of the buffer over its GPU link, and a server sends
    as much over its NICs (one crossing per channel), so ``algbw = frac·p/(2(p-1))·
    min(B_gpu, B_net)``. Trees: a chain GPU sends half the buffer up and half down in
    each of its two trees (2M over its link); a server sends, over its NICs, half the
    buffer per tree edge it holds: ``max over servers`` of (edges)·M/2, which is M on two
    servers and up to 2M on more."""
    s_, p = layout.servers, layout.p
    f = fraction(algorithm, protocol, layout)
    if p <= 1:
        return math.inf
    if protocol == "ll":  # and no more than NCCL's cap on LL
        return min(ll_cap_Bps(algorithm, layout), f / fraction(algorithm, "simple", layout)
                   * algorithm_Bps(algorithm, "simple", layout))
    if algorithm == "ring":
        bw = layout.gpu_Bps if s_ <= 1 else min(layout.gpu_Bps, layout.server_net_Bps)
        return f * p / (2 * (p - 1)) * bw
    g = layout.gpus_per_server
    gpu = layout.gpu_Bps / 2 if g > 1 else math.inf
    if s_ <= 1:
        return f * gpu
    # server-tree edges touching a server, in tree 0 (heap) and tree 1 (reversed heap)
    deg = np.zeros(s_)
    for order in (np.arange(s_), np.arange(s_)[::-1]):
        for k in range(1, s_):
            deg[order[k]] += 1
            deg[order[(k - 1) // 2]] += 1
    net = layout.server_net_Bps / (float(deg.max()) / 2)
    return f * min(gpu, net)


def model_time_s(algorithm: str, protocol: str, nbytes: float, layout: Layout) -> float:
    """NCCL's predicted time: ``latency + nbytes / algorithm bandwidth`` (seconds), plus the
    system's own latency of the protocol (:func:`extra_latency_s`)."""
    if layout.p <= 1:
        return 0.0
    return (latency_s(algorithm, protocol, layout) + extra_latency_s(protocol, layout)
            + nbytes / algorithm_Bps(algorithm, protocol, layout))


def compute_capability(gpu: str) -> int:
    """Compute capability (major*10 + minor) of ``gpu`` (a name of models/devices.yaml,
    case-insensitive); an unknown name is a :class:`ConfigError` listing the known ones."""
    for name, cc in COMPUTE_CAPABILITY.items():
        if name.lower() == str(gpu).lower():
            return cc
    raise ConfigError(f"no compute capability known for GPU {gpu!r}; known: {', '.join(COMPUTE_CAPABILITY)}")


def ll128_default(gpu: str | None) -> bool:
    """Whether NCCL enables LL128 by default on GPUs ``gpu`` joined by NVLink: only on
    compute capability 7.0, 8.0 and 9.0 (:data:`LL128_COMPUTE_CAPABILITIES`). Without a
    GPU (None) the model assumes an NVLink data-centre GPU of those and enables it."""
    if gpu is None:
        return True
    return compute_capability(gpu) in LL128_COMPUTE_CAPABILITIES


def ll_max_bus_Bps(servers: int, gpu: str | None = None, cpu: str = "intel") -> float:
    """NCCL's cap on LL's bus bandwidth (bytes/s, ``llMaxBws``): on one node by the GPU's
    generation (``gpu`` None: Ampere), across nodes by the CPU vendor and 2 or more nodes."""
    if cpu not in CPU_VENDORS:
        raise ConfigError(f"unknown CPU vendor {cpu!r}; valid: {', '.join(CPU_VENDORS)}")
    if servers <= 1:
        cc = 80 if gpu is None else compute_capability(gpu)
        gen = "hopper" if cc >= 90 else "ampere" if cc >= 80 else "volta"
        return LL_MAX_BUS_GBPS_ONE_NODE[gen] * 1e9
    two, more = LL_MAX_BUS_GBPS_NODES[cpu]
    return (two if servers == 2 else more) * 1e9


def ll_cap_Bps(algorithm: str, layout: Layout) -> float:
    """LL's algorithm bandwidth cap from its bus cap: NCCL converts bus to algorithm
    bandwidth by p/(2(p-1)) for the ring and 1/2 for the tree."""
    p = layout.p
    if algorithm == "ring":
        return layout.ll_max_bus_Bps * p / (2 * (p - 1)) if p > 1 else math.inf
    return layout.ll_max_bus_Bps / 2


def extra_latency_s(protocol: str, layout: Layout) -> float:
    """The system's latency of ``protocol`` beyond NCCL's model (seconds; 0 if not given)."""
    return dict(layout.extra_latency_s).get(protocol, 0.0)


def allowed_protocols(layout: Layout) -> tuple[str, ...]:
    return PROTOCOLS if layout.ll128 else ("ll", "simple")


def choose(nbytes: float, layout: Layout, *, algorithm: str = "auto", protocol: str = "auto"
           ) -> tuple[str, str]:
    """The (algorithm, protocol) NCCL's tuning model picks for ``nbytes`` on ``layout``
    (the fastest predicted), among those not forced by ``algorithm``/``protocol``."""
    algs = ALGORITHMS if algorithm == "auto" else (algorithm,)
    protos = allowed_protocols(layout) if protocol == "auto" else (protocol,)
    best = min(((model_time_s(a, q, nbytes, layout), i, j, a, q)
                for i, a in enumerate(algs) for j, q in enumerate(protos)))
    return best[3], best[4]


def crossover_bytes(a: tuple[str, str], b: tuple[str, str], layout: Layout) -> float:
    """The buffer size at which ``a`` and ``b`` are predicted equally fast (``a`` faster
    below it when it has the lower latency): ``(L_b - L_a) / (1/W_a - 1/W_b)``."""
    la = latency_s(*a, layout) + extra_latency_s(a[1], layout)
    lb = latency_s(*b, layout) + extra_latency_s(b[1], layout)
    wa, wb = algorithm_Bps(*a, layout), algorithm_Bps(*b, layout)
    den = 1 / wa - 1 / wb
    return (lb - la) / den if den != 0 else math.inf


# ---------------------------------------------------------------------- from a topology
def layout_of(topology: Topology, ranks: np.ndarray, *, efficiency: float = 1.0,
              ll128: bool = True, gpu: str | None = None, cpu: str = "intel",
              extra_latency_us: Mapping[str, float] | None = None) -> Layout:
    """The :class:`Layout` of ``ranks`` on ``topology``: servers from ``topology.servers``
    (none: one rank per server), a GPU's bandwidth the bottleneck of the route to the next
    GPU of its server (to the next rank when servers hold one GPU), a server's network
    bandwidth the sum of its NIC links (the GPU's own route bandwidth without NICs);
    all times ``efficiency`` (payload bytes per wire byte). LL's cap follows ``gpu`` and
    ``cpu`` (:func:`ll_max_bus_Bps`); ``extra_latency_us`` is the system's own latency per
    protocol (microseconds)."""
    grid = grid_of(topology.servers, ranks, "nccl_allreduce")
    s_, g = grid.shape
    if g > 1:
        gpu_Bps = min(topology.route_bandwidth_Bps(int(grid[0, j]), int(grid[0, (j + 1) % g]))
                      for j in range(g))
    elif len(ranks) > 1:
        gpu_Bps = topology.route_bandwidth_Bps(int(ranks[0]), int(ranks[1]))
    else:
        gpu_Bps = math.inf
    net, nics = _server_nics(topology, grid)
    if net is None:
        net = gpu_Bps
    extra = tuple(sorted((k, float(v) * 1e-6) for k, v in (extra_latency_us or {}).items()))
    return Layout(grid, gpu_Bps * efficiency, net * efficiency if s_ > 1 else math.inf, nics,
                  "nvlink", ll128, ll_max_bus_Bps(s_, gpu, cpu), extra)


def _server_nics(topology: Topology, grid: np.ndarray) -> tuple[float | None, int]:
    """(total bandwidth of the first server's NIC links, NIC count), (None, 1) if none."""
    g = topology.graph
    gpu = topology.node_of(int(grid[0, 0]))
    hubs = [v for v in g.successors(gpu) if g.nodes[v]["kind"] == "switch"]
    for sw in hubs:
        nic_bw = [float(d["bandwidth_Bps"]) for _, v, d in g.out_edges(sw, data=True)
                  if g.nodes[v]["kind"] == "nic"]
        if nic_bw:
            return sum(nic_bw), len(nic_bw)
    return None, 1


# ---------------------------------------------------------------------- system profiles
PROFILES_FILE = Path(__file__).with_name("nccl_profiles.yaml")


def load_profiles(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The system profiles (``nccl_profiles.yaml``) by name."""
    with open(path or PROFILES_FILE, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"{path or PROFILES_FILE}: expected a mapping of profile names")
    return data


def profile_topology(name: str, *, servers: int | None = None) -> Topology:
    """The ``servers`` topology of profile ``name`` (an unknown name lists the valid ones):
    NVSwitch inside each server at ``nvlink_links x nvlink_link_GBps``, ``nics`` NICs of
    ``nic_gbps`` per server on one non-blocking switch, links without latency."""
    from gradwire.simulator.topology import servers as build_servers

    profiles = load_profiles()
    if name not in profiles:
        raise ConfigError(f"unknown NCCL profile {name!r}; valid: {', '.join(sorted(profiles))}")
    pr = profiles[name]
    return build_servers(
        num_servers=int(servers if servers is not None else pr["servers"]),
        gpus_per_server=int(pr["gpus_per_server"]),
        intra_bandwidth_Bps=float(pr["nvlink_links"]) * float(pr["nvlink_link_GBps"]) * 1e9,
        nic_bandwidth_Bps=float(pr["nic_gbps"]) * 1e9 / 8,
        intra_latency_s=0.0,
        nic_latency_s=0.0,
        nics_per_server=int(pr["nics"]),
    )
