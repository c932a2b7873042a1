"""Cluster topologies: a networkx graph of GPUs, NICs, switches and full-duplex links.

A :class:`Topology` is what the flow-level engine (:mod:`gradwire.simulator.network`) runs
on: a directed graph whose nodes carry ``kind`` in ``{"gpu", "nic", "switch"}`` and whose
edges (one per direction, so each direction of a full-duplex link has its own capacity)
carry ``bandwidth_Bps`` (bytes/s) and ``latency_s`` (one-way propagation, seconds), plus
the mapping of ranks onto GPU nodes. Routes are shortest paths in hops; where several
exist (fat-trees, leaf-spine fabrics) the choice is the destination-modulo (D-mod-k) flow
hash used by fat-tree switches: at the i-th branching point the next hop is digit i of the
destination's port number in the mixed radix of the branching factors, which spreads
shift and all-to-all patterns evenly over the uplinks and is fully deterministic.

Builders (registered in :data:`TOPOLOGIES`) take SI units and validate their parameters;
:func:`make_topology` builds one by name and maps ``num_ranks`` ranks onto it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from gradwire.errors import ConfigError, TopologyError
from gradwire.registry import Registry

DEFAULT_LATENCY_S = 1e-6
KINDS = ("gpu", "nic", "switch")


@dataclass
class Topology:
    """A network graph plus the mapping of ranks onto its GPU nodes.

    ``graph`` nodes have ``kind``; each directed edge has ``bandwidth_Bps`` and
    ``latency_s`` and, once built, ``link_id`` (the index into :attr:`bandwidth_Bps` and
    :attr:`latency_s`). ``servers`` groups ranks per server for hierarchical collectives.
    Construction validates everything and raises :class:`TopologyError` naming the fault.
    """

    graph: nx.DiGraph
    ranks: list[Hashable]
    name: str
    servers: list[list[int]] | None = None
    bandwidth_Bps: np.ndarray = field(init=False, repr=False)
    latency_s: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._validate()
        g = self.graph
        self._nodes: list[Hashable] = list(g.nodes)
        self._index: dict[Hashable, int] = {n: i for i, n in enumerate(self._nodes)}
        edges = list(g.edges)
        self._endpoints: list[tuple[Hashable, Hashable]] = edges
        self.bandwidth_Bps = np.array([g.edges[e]["bandwidth_Bps"] for e in edges], dtype=float)
        self.latency_s = np.array([g.edges[e]["latency_s"] for e in edges], dtype=float)
        self._link_of: dict[tuple[int, int], int] = {}
        for lid, (u, v) in enumerate(edges):
            g.edges[u, v]["link_id"] = lid
            self._link_of[(self._index[u], self._index[v])] = lid
        self._rank_node = [self._index[n] for n in self.ranks]
        self._route_cache: dict[tuple[int, int], tuple[int, ...]] = {}
        # (sources, destinations) -> the networks' (flow, link) incidence of those routes
        self.incidence_cache: dict[tuple[bytes, bytes], tuple[Any, Any]] = {}
        self._prepare_routing()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        g = self.graph
        if not isinstance(g, nx.DiGraph):
            raise TopologyError(f"topology {self.name!r}: graph must be a networkx.DiGraph")
        if g.number_of_nodes() == 0:
            raise TopologyError(f"topology {self.name!r}: the graph has no nodes")
        for n, data in g.nodes(data=True):
            kind = data.get("kind")
            if kind not in KINDS:
                raise TopologyError(
                    f"topology {self.name!r}: node {n!r} has kind {kind!r}; "
                    f"set attribute kind to one of {', '.join(KINDS)}"
                )
        for u, v, data in g.edges(data=True):
            if u == v:
                raise TopologyError(f"topology {self.name!r}: self-loop on node {u!r}; remove it")
            bw = data.get("bandwidth_Bps")
            lat = data.get("latency_s")
            if not isinstance(bw, (int, float)) or not math.isfinite(bw) or bw <= 0:
                raise TopologyError(
                    f"topology {self.name!r}: link {u!r}->{v!r} has bandwidth_Bps={bw!r}; "
                    "every link needs a finite bandwidth > 0"
                )
            if not isinstance(lat, (int, float)) or not math.isfinite(lat) or lat < 0:
                raise TopologyError(
                    f"topology {self.name!r}: link {u!r}->{v!r} has latency_s={lat!r}; "
                    "every link needs a finite latency >= 0"
                )
            if not g.has_edge(v, u):
                raise TopologyError(
                    f"topology {self.name!r}: link {u!r}->{v!r} has no reverse direction; "
                    "links are full duplex, add {v!r}->{u!r}"
                )
        if not nx.is_strongly_connected(g):
            parts = sorted(nx.strongly_connected_components(g), key=len, reverse=True)
            sample = sorted(map(str, parts[1]))[:5]
            raise TopologyError(
                f"topology {self.name!r}: the graph is disconnected ({len(parts)} components; "
                f"e.g. nodes {', '.join(sample)} cannot reach the rest); connect every node"
            )
        gpus = [n for n, k in g.nodes(data="kind") if k == "gpu"]
        if len(self.ranks) == 0:
            raise TopologyError(f"topology {self.name!r}: no ranks; it needs at least one GPU")
        if len(self.ranks) > len(gpus):
            raise TopologyError(
                f"topology {self.name!r}: {len(self.ranks)} ranks but only {len(gpus)} GPUs; "
                "use fewer ranks or a larger topology"
            )
        if len(set(self.ranks)) != len(self.ranks):
            raise TopologyError(f"topology {self.name!r}: two ranks map onto the same GPU")
        for r, n in enumerate(self.ranks):
            if n not in g or g.nodes[n]["kind"] != "gpu":
                raise TopologyError(
                    f"topology {self.name!r}: rank {r} maps to {n!r}, which is not a GPU node"
                )
        if self.servers is not None:
            seen = sorted(r for s in self.servers for r in s)
            if seen != list(range(len(self.ranks))):
                raise TopologyError(
                    f"topology {self.name!r}: servers must partition ranks 0..{len(self.ranks) - 1}"
                )

    # ------------------------------------------------------------------ basic API
    @property
    def num_ranks(self) -> int:
        return len(self.ranks)

    @property
    def num_links(self) -> int:
        return len(self._endpoints)

    def link_endpoints(self, link_id: int) -> tuple[Hashable, Hashable]:
        """The (from, to) nodes of directed link ``link_id``."""
        return self._endpoints[link_id]

    def link_id(self, u: Hashable, v: Hashable) -> int:
        """The id of the directed link from node ``u`` to node ``v``."""
        try:
            return self._link_of[(self._index[u], self._index[v])]
        except KeyError:
            raise TopologyError(f"topology {self.name!r}: no link {u!r}->{v!r}") from None

    def node_of(self, rank: int) -> Hashable:
        return self.ranks[rank]

    def with_ranks(self, num_ranks: int) -> Topology:
        """The same network with only the first ``num_ranks`` ranks (servers trimmed)."""
        if num_ranks > self.num_ranks:
            raise TopologyError(
                f"topology {self.name!r}: {num_ranks} ranks asked but it has only "
                f"{self.num_ranks} GPUs; use fewer ranks or a larger topology"
            )
        if num_ranks < 1:
            raise TopologyError(f"topology {self.name!r}: num_ranks must be >= 1, got {num_ranks}")
        servers = None
        if self.servers is not None:
            servers = [[r for r in s if r < num_ranks] for s in self.servers]
            servers = [s for s in servers if s]
        return Topology(self.graph.copy(), self.ranks[:num_ranks], self.name, servers)

    def positions(self) -> dict[str, tuple[float, float]]:
        """Node -> (x, y) for drawing: the builders' ``pos`` attributes, else a seeded layout."""
        pos = nx.get_node_attributes(self.graph, "pos")
        if len(pos) != self.graph.number_of_nodes():
            pos = nx.spring_layout(self.graph.to_undirected(), seed=0)
        return {str(n): (float(p[0]), float(p[1])) for n, p in pos.items()}

    def node_kinds(self) -> dict[str, str]:
        return {str(n): str(k) for n, k in self.graph.nodes(data="kind")}

    # ------------------------------------------------------------------ routing
    def _prepare_routing(self) -> None:
        """Split the graph into a core (nodes on cycles) and trees hanging off it.

        Leaves are peeled repeatedly; each peeled node remembers the neighbour it hung
        from. Routes inside one tree are the unique tree path; routes between trees climb
        to their anchors and cross the core by breadth-first distances, so a fat-tree of
        GPU servers only searches its switch core, once per destination switch.
        """
        n = len(self._nodes)
        nbrs: list[list[int]] = [[] for _ in range(n)]
        for (u, v) in self._link_of:
            nbrs[u].append(v)
        for lst in nbrs:
            lst.sort()
        self._nbrs = nbrs
        deg = [len(x) for x in nbrs]
        alive = [True] * n
        parent = [-1] * n
        queue = [i for i in range(n) if deg[i] == 1]
        remaining = n
        head = 0
        while head < len(queue) and remaining > 1:
            v = queue[head]
            head += 1
            if not alive[v] or deg[v] != 1:
                continue
            u = next(w for w in nbrs[v] if alive[w])
            parent[v] = u
            alive[v] = False
            remaining -= 1
            deg[u] -= 1
            if deg[u] == 1:
                queue.append(u)
        self._parent = parent
        self._core_nbrs = [[w for w in nbrs[i] if alive[w]] if alive[i] else [] for i in range(n)]
        # port number of each node: its index among nodes of its kind, in insertion order
        counters: dict[str, int] = {}
        port = [0] * n
        for i, node in enumerate(self._nodes):
            kind = self.graph.nodes[node]["kind"]
            port[i] = counters.get(kind, 0)
            counters[kind] = port[i] + 1
        self._port = port
        # the core's adjacency as CSR arrays, for breadth-first searches one level at a time
        lens = np.fromiter((len(x) for x in self._core_nbrs), dtype=np.int64, count=n)
        self._core_ptr = np.concatenate(([0], np.cumsum(lens)))
        self._core_idx = np.fromiter((w for x in self._core_nbrs for w in x), dtype=np.int64,
                                     count=int(lens.sum()))
        # target -> [hop distances (-1: not reached yet), the frontier of the search]
        self._bfs: dict[int, list[np.ndarray]] = {}

    def _chain(self, v: int) -> list[int]:
        """v, parent(v), ..., up to its anchor in the core."""
        out = [v]
        while self._parent[out[-1]] >= 0:
            out.append(self._parent[out[-1]])
        return out

    def _dist_to(self, target: int, need: int) -> np.ndarray:
        """Hop distances to ``target`` over the core (-1 where not reached), the search
        expanded level by level until it reaches ``need``."""
        state = self._bfs.get(target)
        if state is None:
            dist = np.full(len(self._nodes), -1, dtype=np.int32)
            dist[target] = 0
            state = [dist, np.array([target], dtype=np.int64)]
            self._bfs[target] = state
        dist, frontier = state
        ptr, idx = self._core_ptr, self._core_idx
        while dist[need] < 0 and len(frontier):
            starts, ends = ptr[frontier], ptr[frontier + 1]
            counts = ends - starts
            # every neighbour of the frontier: the CSR rows of its nodes, concatenated
            offs = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
            nb = idx[offs + np.arange(int(counts.sum()))]
            nb = np.unique(nb[dist[nb] < 0])
            dist[nb] = dist[frontier[0]] + 1
            frontier = nb
        state[1] = frontier
        return dist

    def _node_path(self, a: int, b: int) -> list[int]:
        if a == b:
            return [a]
        up_a = self._chain(a)
        up_b = self._chain(b)
        ca, cb = up_a[-1], up_b[-1]
        if ca == cb:
            pos_a = {v: i for i, v in enumerate(up_a)}
            j = 0
            while up_b[j] not in pos_a:
                j += 1
            return up_a[: pos_a[up_b[j]] + 1] + up_b[:j][::-1]
        key = self._port[up_b[-2]] if len(up_b) > 1 else self._port[b]
        dist = self._dist_to(cb, ca)
        path = list(up_a)
        cur = ca
        radix = 1
        ptr, idx = self._core_ptr, self._core_idx
        while cur != cb:
            want = int(dist[cur]) - 1
            nb = idx[ptr[cur]:ptr[cur + 1]]  # sorted, as _core_nbrs[cur]; a switch has thousands
            cands = nb[dist[nb] == want].tolist()
            if len(cands) == 1:
                cur = cands[0]
            elif want == 1:
                # the way into a multi-homed destination (one of its server's NICs): the
                # lowest digit, as on the source side, so flows keep to one rail
                cur = cands[key % len(cands)]
            else:
                cur = cands[(key // radix) % len(cands)]
                radix *= len(cands)
            path.append(cur)
        path.extend(up_b[-2::-1])
        return path

    def route(self, src_rank: int, dst_rank: int) -> tuple[int, ...]:
        """Link ids along the route from rank ``src_rank`` to rank ``dst_rank`` (cached).

        Shortest in hops; among equal-cost paths the destination-modulo flow hash picks
        one (see the module docstring). A rank to itself has the empty route.
        """
        key = (src_rank, dst_rank)
        hit = self._route_cache.get(key)
        if hit is not None:
            return hit
        for r, what in ((src_rank, "src_rank"), (dst_rank, "dst_rank")):
            if not 0 <= r < len(self.ranks):
                raise TopologyError(
                    f"topology {self.name!r}: {what}={r} is not a rank (0..{len(self.ranks) - 1})"
                )
        nodes = self._node_path(self._rank_node[src_rank], self._rank_node[dst_rank])
        links = tuple(self._link_of[(u, v)] for u, v in itertools.pairwise(nodes))
        self._route_cache[key] = links
        return links

    def route_latency_s(self, src_rank: int, dst_rank: int) -> float:
        """Propagation latency along the route, seconds (sum of link latencies)."""
        return float(sum(self.latency_s[i] for i in self.route(src_rank, dst_rank)))

    def route_bandwidth_Bps(self, src_rank: int, dst_rank: int) -> float:
        """Bottleneck bandwidth along the route, bytes/s (inf for a rank to itself)."""
        r = self.route(src_rank, dst_rank)
        return float(min(self.bandwidth_Bps[i] for i in r)) if r else math.inf


TOPOLOGIES: Registry[Topology] = Registry("topology")


# ---------------------------------------------------------------------- helpers
def _pos_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_bw(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise TopologyError(f"{name} must be a finite bandwidth in bytes/s > 0, got {value!r}")
    return float(value)


def _check_lat(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise TopologyError(f"{name} must be a finite latency in seconds >= 0, got {value!r}")
    return float(value)


def _check_ratio(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1:
        raise TopologyError(f"{name} must be a ratio >= 1 (1 = non-blocking), got {value!r}")
    return float(value)


def _link(g: nx.DiGraph, u: Hashable, v: Hashable, bandwidth_Bps: float, latency_s: float) -> None:
    """A full-duplex link: two directed edges, each with the full bandwidth."""
    g.add_edge(u, v, bandwidth_Bps=bandwidth_Bps, latency_s=latency_s)
    g.add_edge(v, u, bandwidth_Bps=bandwidth_Bps, latency_s=latency_s)


def _circle(i: int, n: int, r: float = 1.0) -> tuple[float, float]:
    a = 2 * math.pi * i / max(n, 1)
    return (r * math.cos(a), r * math.sin(a))


# ---------------------------------------------------------------------- builders
@TOPOLOGIES.register("star")
def star(num_gpus: int, bandwidth_Bps: float, latency_s: float = DEFAULT_LATENCY_S) -> Topology:
    """``num_gpus`` GPUs each with its own full-duplex link to one non-blocking switch."""
    p = _pos_int(num_gpus, "num_gpus")
    bw = _check_bw(bandwidth_Bps, "bandwidth_Bps")
    lat = _check_lat(latency_s, "latency_s")
    g = nx.DiGraph()
    g.add_node("sw", kind="switch", pos=(0.0, 0.0))
    for i in range(p):
        g.add_node(f"gpu{i}", kind="gpu", pos=_circle(i, p))
        _link(g, f"gpu{i}", "sw", bw, lat)
    return Topology(g, [f"gpu{i}" for i in range(p)], f"star({p})")


@TOPOLOGIES.register("ring")
def ring(num_gpus: int, bandwidth_Bps: float, latency_s: float = DEFAULT_LATENCY_S) -> Topology:
    """``num_gpus`` GPUs on a ring of dedicated full-duplex links (gpu i -- gpu i+1)."""
    p = _pos_int(num_gpus, "num_gpus")
    bw = _check_bw(bandwidth_Bps, "bandwidth_Bps")
    lat = _check_lat(latency_s, "latency_s")
    g = nx.DiGraph()
    for i in range(p):
        g.add_node(f"gpu{i}", kind="gpu", pos=_circle(i, p))
    for i in range(p if p > 2 else p - 1):
        _link(g, f"gpu{i}", f"gpu{(i + 1) % p}", bw, lat)
    return Topology(g, [f"gpu{i}" for i in range(p)], f"ring({p})")


@TOPOLOGIES.register("torus2d")
def torus2d(
    rows: int, cols: int, bandwidth_Bps: float, latency_s: float = DEFAULT_LATENCY_S
) -> Topology:
    """A ``rows`` x ``cols`` 2-D torus of GPUs (wrap-around links); rank = row * cols + col."""
    r_ = _pos_int(rows, "rows")
    c_ = _pos_int(cols, "cols")
    bw = _check_bw(bandwidth_Bps, "bandwidth_Bps")
    lat = _check_lat(latency_s, "latency_s")
    g = nx.DiGraph()
    name = [[f"gpu{r * c_ + c}" for c in range(c_)] for r in range(r_)]
    for r in range(r_):
        for c in range(c_):
            g.add_node(name[r][c], kind="gpu", pos=(float(c), float(-r)))
    for r in range(r_):
        for c in range(c_):
            if c_ > 1 and (c + 1 < c_ or c_ > 2):
                _link(g, name[r][c], name[r][(c + 1) % c_], bw, lat)
            if r_ > 1 and (r + 1 < r_ or r_ > 2):
                _link(g, name[r][c], name[(r + 1) % r_][c], bw, lat)
    return Topology(g, [f"gpu{i}" for i in range(r_ * c_)], f"torus2d({r_}x{c_})")


def _fat_tree_graph(
    g: nx.DiGraph, k: int, bw: float, lat: float, oversubscription: float
) -> list[str]:
    """Add the switches of a k-ary fat-tree to ``g``; return its edge switch per host slot.

    k pods of k/2 edge and k/2 aggregation switches, (k/2)^2 core switches, k^3/4 host
    ports. Oversubscription r divides the bandwidth of every link above the edge layer by
    r, so the edge layer is r:1 oversubscribed and the bisection bandwidth is 1/r of full.
    """
    h = k // 2
    up_bw = bw / oversubscription
    for c in range(h * h):
        g.add_node(f"core{c}", kind="switch", pos=(c - (h * h - 1) / 2, 3.0))
    slots: list[str] = []
    for p in range(k):
        for a in range(h):
            g.add_node(f"agg{p}.{a}", kind="switch", pos=(p * h + a - (k * h - 1) / 2, 2.0))
            for j in range(h):
                _link(g, f"agg{p}.{a}", f"core{a * h + j}", up_bw, lat)
        for e in range(h):
            g.add_node(f"edge{p}.{e}", kind="switch", pos=(p * h + e - (k * h - 1) / 2, 1.0))
            for a in range(h):
                _link(g, f"edge{p}.{e}", f"agg{p}.{a}", up_bw, lat)
            slots.extend([f"edge{p}.{e}"] * h)
    return slots


def _fat_tree_k(value: Any) -> int:
    k = _pos_int(value, "k", 2)
    if k % 2:
        raise ConfigError(f"fat_tree k must be even (k-port switches), got {k}")
    return k


@TOPOLOGIES.register("fat_tree")
def fat_tree(
    k: int,
    bandwidth_Bps: float,
    latency_s: float = DEFAULT_LATENCY_S,
    oversubscription: float = 1.0,
    num_gpus: int | None = None,
) -> Topology:
    """A k-ary fat-tree (Al-Fares et al. 2008) with one GPU per host port.

    Nodes: (k/2)^2 core + k^2 pod switches + ``num_gpus`` (default k^3/4) GPUs; every link
    has ``bandwidth_Bps`` except those above the edge layer, which have
    ``bandwidth_Bps / oversubscription``.
    """
    k = _fat_tree_k(k)
    bw = _check_bw(bandwidth_Bps, "bandwidth_Bps")
    lat = _check_lat(latency_s, "latency_s")
    over = _check_ratio(oversubscription, "oversubscription")
    hosts = k**3 // 4
    n = hosts if num_gpus is None else _pos_int(num_gpus, "num_gpus")
    if n > hosts:
        raise TopologyError(
            f"fat_tree(k={k}) has {hosts} host ports but num_gpus={n}; use a larger k"
        )
    g = nx.DiGraph()
    slots = _fat_tree_graph(g, k, bw, lat, over)
    for i in range(n):
        g.add_node(f"gpu{i}", kind="gpu", pos=(i * (k * k / 2) / hosts - (k * k / 2 - 1) / 2, 0.0))
        _link(g, f"gpu{i}", slots[i], bw, lat)
    return Topology(g, [f"gpu{i}" for i in range(n)], f"fat_tree(k={k}, over={over:g})")


def smallest_fat_tree_k(hosts: int) -> int:
    """The smallest even k whose fat-tree has at least ``hosts`` host ports (k^3/4)."""
    k = 2
    while k**3 // 4 < hosts:
        k += 2
    return k


@TOPOLOGIES.register("servers")
def servers(
    num_servers: int,
    gpus_per_server: int,
    intra_bandwidth_Bps: float,
    nic_bandwidth_Bps: float,
    intra_latency_s: float = DEFAULT_LATENCY_S,
    nic_latency_s: float = 5 * DEFAULT_LATENCY_S,
    nics_per_server: int = 1,
    fabric: str = "switch",
    oversubscription: float = 1.0,
    servers_per_leaf: int = 4,
    num_spines: int | None = None,
    fabric_bandwidth_Bps: float | None = None,
    fabric_latency_s: float | None = None,
    intra: str = "switch",
    pcie_bandwidth_Bps: float | None = None,
) -> Topology:
    """Servers of ``gpus_per_server`` GPUs joined by NVLink-class links or a switch, each
    server with ``nics_per_server`` NICs into a fabric.

    ``intra="switch"`` (default): GPU -- nvswitch links (``intra_bandwidth_Bps``,
    ``intra_latency_s``) and nvswitch -- NIC links (``nic_bandwidth_Bps``,
    ``nic_latency_s``). ``intra="mesh"``: a direct link between every pair of GPUs of a
    server (``intra_bandwidth_Bps`` each), and every GPU on a PCIe switch
    (``pcie_bandwidth_Bps``, default the NIC bandwidth) that holds the NICs. ``fabric``:
    ``"switch"`` (one non-blocking switch), ``"leaf_spine"`` (``servers_per_leaf`` servers
    per leaf, ``num_spines`` spines, default as many as NICs per leaf, leaf uplinks sized
    so that leaf down:up capacity is ``oversubscription``) or ``"fat_tree"`` (the smallest
    k-ary fat-tree with a host port per NIC, ``oversubscription`` above its edge layer).
    Fabric links default to the NIC bandwidth and latency.
    """
    s_ = _pos_int(num_servers, "num_servers")
    gps = _pos_int(gpus_per_server, "gpus_per_server")
    nics = _pos_int(nics_per_server, "nics_per_server")
    ibw = _check_bw(intra_bandwidth_Bps, "intra_bandwidth_Bps")
    nbw = _check_bw(nic_bandwidth_Bps, "nic_bandwidth_Bps")
    ilat = _check_lat(intra_latency_s, "intra_latency_s")
    nlat = _check_lat(nic_latency_s, "nic_latency_s")
    over = _check_ratio(oversubscription, "oversubscription")
    fbw = nbw if fabric_bandwidth_Bps is None else _check_bw(fabric_bandwidth_Bps, "fabric_bandwidth_Bps")
    flat = nlat if fabric_latency_s is None else _check_lat(fabric_latency_s, "fabric_latency_s")
    if intra not in ("switch", "mesh"):
        raise ConfigError(f"servers intra must be 'switch' or 'mesh', got {intra!r}")
    pbw = nbw if pcie_bandwidth_Bps is None else _check_bw(pcie_bandwidth_Bps, "pcie_bandwidth_Bps")
    fabrics = ("switch", "leaf_spine", "fat_tree")
    if fabric not in fabrics:
        raise ConfigError(f"servers fabric must be one of {', '.join(fabrics)}, got {fabric!r}")
    g = nx.DiGraph()
    n_nics = s_ * nics
    if fabric == "switch":
        g.add_node("fabric", kind="switch", pos=(0.0, 3.0))
        attach = ["fabric"] * n_nics
    elif fabric == "leaf_spine":
        per_leaf = _pos_int(servers_per_leaf, "servers_per_leaf")
        n_leaves = -(-s_ // per_leaf)
        spines = nics * per_leaf if num_spines is None else _pos_int(num_spines, "num_spines")
        up_bw = per_leaf * nics * fbw / (spines * over)
        for j in range(spines):
            g.add_node(f"spine{j}", kind="switch", pos=(j - (spines - 1) / 2, 4.0))
        attach = []
        for leaf in range(n_leaves):
            g.add_node(f"leaf{leaf}", kind="switch", pos=(leaf - (n_leaves - 1) / 2, 3.0))
            for j in range(spines):
                _link(g, f"leaf{leaf}", f"spine{j}", up_bw, flat)
            attach.extend([f"leaf{leaf}"] * (per_leaf * nics))
    else:
        k = smallest_fat_tree_k(n_nics)
        attach = _fat_tree_graph(g, k, fbw, flat, over)
    ranks: list[Hashable] = []
    groups: list[list[int]] = []
    width = max(s_ - 1, 1)
    for s in range(s_):
        x = s * 8.0 / width - 4.0 if s_ > 1 else 0.0
        hub = f"nvs{s}" if intra == "switch" else f"pcie{s}"
        g.add_node(hub, kind="switch", pos=(x, 1.0))
        members = []
        for j in range(gps):
            r = s * gps + j
            g.add_node(f"gpu{r}", kind="gpu", pos=(x + (j - (gps - 1) / 2) * 0.8 / gps, 0.0))
            if intra == "switch":
                _link(g, f"gpu{r}", hub, ibw, ilat)
            else:
                _link(g, f"gpu{r}", hub, pbw, ilat)
                for q in range(s * gps, r):
                    _link(g, f"gpu{q}", f"gpu{r}", ibw, ilat)
            ranks.append(f"gpu{r}")
            members.append(r)
        groups.append(members)
        for j in range(nics):
            nic = f"nic{s}.{j}"
            g.add_node(nic, kind="nic", pos=(x + (j - (nics - 1) / 2) * 0.3, 2.0))
            _link(g, hub, nic, nbw, nlat)
            _link(g, nic, attach[s * nics + j], fbw, flat)
    name = f"servers({s_}x{gps}, {fabric}{', mesh' if intra == 'mesh' else ''})"
    return Topology(g, ranks, name, groups)


@TOPOLOGIES.register("graph_file")
def graph_file(
    path: str,
    bandwidth_Bps: float | None = None,
    latency_s: float = DEFAULT_LATENCY_S,
    gpus: Sequence[str] | None = None,
) -> Topology:
    """A topology read from GraphML (``.graphml``) or a whitespace edge list (other names).

    Links are undirected in the file and become full duplex. Edge attributes:
    ``bandwidth_Bps`` or ``bandwidth_Gbps`` (Gbit/s, converted), ``latency_s`` or
    ``latency_us``; missing ones fall back to ``bandwidth_Bps`` / ``latency_s`` given here.
    An edge-list line is ``u v [key=value ...]``. Node ``kind`` comes from a GraphML
    attribute, else ``gpus`` (node names) or the name prefix ``gpu``; other nodes are
    switches. Ranks are the GPU nodes in file order.
    """
    p = Path(path)
    if not p.is_file():
        raise TopologyError(f"graph_file path {str(p)!r} does not exist; give a GraphML or edge-list file")
    if p.suffix.lower() == ".graphml":
        try:
            raw = nx.read_graphml(p)
        except Exception as exc:
            raise TopologyError(f"graph_file {str(p)!r}: cannot read GraphML: {exc}") from None
        und = nx.Graph(raw)
        und.add_nodes_from(raw.nodes(data=True))
    else:
        und = nx.Graph()
        for lineno, line in enumerate(p.read_text().splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) < 2:
                raise TopologyError(f"{p}:{lineno}: expected 'u v [key=value ...]', got {line!r}")
            attrs: dict[str, Any] = {}
            for item in parts[2:]:
                key, sep, val = item.partition("=")
                if not sep:
                    raise TopologyError(f"{p}:{lineno}: attribute {item!r} is not key=value")
                try:
                    attrs[key] = float(val)
                except ValueError:
                    raise TopologyError(f"{p}:{lineno}: attribute {key} must be a number, got {val!r}") from None
            und.add_edge(parts[0], parts[1], **attrs)
    gpu_set = set(gpus) if gpus is not None else None
    g = nx.DiGraph()
    for n, data in und.nodes(data=True):
        kind = data.get("kind")
        if kind is None:
            is_gpu = n in gpu_set if gpu_set is not None else str(n).startswith("gpu")
            kind = "gpu" if is_gpu else "switch"
        g.add_node(n, kind=kind)
    for u, v, data in und.edges(data=True):
        if "bandwidth_Bps" in data:
            bw = float(data["bandwidth_Bps"])
        elif "bandwidth_Gbps" in data:
            bw = float(data["bandwidth_Gbps"]) * 1e9 / 8
        elif bandwidth_Bps is not None:
            bw = float(bandwidth_Bps)
        else:
            raise TopologyError(
                f"graph_file {str(p)!r}: link {u}--{v} has no bandwidth; add bandwidth_Bps or "
                "bandwidth_Gbps to it or pass bandwidth_Bps"
            )
        if "latency_s" in data:
            lat = float(data["latency_s"])
        elif "latency_us" in data:
            lat = float(data["latency_us"]) * 1e-6
        else:
            lat = float(latency_s)
        _link(g, u, v, bw, lat)
    ranks = [n for n, k in g.nodes(data="kind") if k == "gpu"]
    return Topology(g, ranks, f"graph_file({p.name})")


# ---------------------------------------------------------------------- by name
def _near_square(n: int) -> tuple[int, int]:
    r = math.isqrt(n)
    while n % r:
        r -= 1
    return r, n // r


def make_topology(name: str, num_ranks: int | None = None, **params: Any) -> Topology:
    """Build topology ``name`` and map ``num_ranks`` ranks (default: every GPU) onto it.

    Size parameters left out are derived from ``num_ranks``: ``num_gpus`` for star, ring
    and fat_tree (and the smallest ``k``), ``rows``/``cols`` (near square) for torus2d,
    ``num_servers`` for servers. More ranks than GPUs is a :class:`TopologyError`.
    """
    params = dict(params)
    if num_ranks is not None:
        n = _pos_int(num_ranks, "num_ranks")
        if name in ("star", "ring"):
            params.setdefault("num_gpus", n)
        elif name == "fat_tree":
            params.setdefault("num_gpus", n)
            params.setdefault("k", smallest_fat_tree_k(n))
        elif name == "torus2d" and "rows" not in params and "cols" not in params:
            params["rows"], params["cols"] = _near_square(n)
        elif name == "servers" and "num_servers" not in params and "gpus_per_server" in params:
            params["num_servers"] = -(-n // _pos_int(params["gpus_per_server"], "gpus_per_server"))
    topo = TOPOLOGIES.create(name, **params)
    if num_ranks is not None and num_ranks != topo.num_ranks:
        topo = topo.with_ranks(num_ranks)
    return topo
