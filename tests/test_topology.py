"""Topology builders: closed-form node/edge/degree counts, routes, validation errors."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwire.errors import ConfigError, TopologyError, UnknownNameError
from gradwire.simulator.topology import TOPOLOGIES, Topology, make_topology

BW = 12.5e9


def kinds(t: Topology) -> Counter[str]:
    return Counter(k for _, k in t.graph.nodes(data="kind"))


def assert_route_is_path(t: Topology, a: int, b: int) -> None:
    links = t.route(a, b)
    if a == b:
        assert links == ()
        return
    ends = [t.link_endpoints(i) for i in links]
    assert ends[0][0] == t.node_of(a) and ends[-1][1] == t.node_of(b)
    for (_, v), (u, _) in itertools.pairwise(ends):
        assert v == u


@pytest.mark.parametrize("p", [1, 2, 5, 16])
def test_star_counts(p: int) -> None:
    t = TOPOLOGIES.create("star", num_gpus=p, bandwidth_Bps=BW)
    assert kinds(t) == {"gpu": p, "switch": 1}
    assert t.graph.number_of_edges() == 2 * p
    assert t.graph.out_degree("sw") == p and t.graph.in_degree("sw") == p
    assert t.num_ranks == p and t.num_links == 2 * p
    if p > 1:
        assert len(t.route(0, p - 1)) == 2


@pytest.mark.parametrize("p", [3, 4, 9])
def test_ring_counts_and_shortest_way_round(p: int) -> None:
    t = make_topology("ring", p, bandwidth_Bps=BW)
    assert t.graph.number_of_edges() == 2 * p
    assert all(d == 2 for _, d in t.graph.out_degree())
    for b in range(p):
        assert len(t.route(0, b)) == min(b, p - b)
        assert_route_is_path(t, 0, b)


@pytest.mark.parametrize(("rows", "cols"), [(3, 3), (3, 5), (4, 4)])
def test_torus_counts(rows: int, cols: int) -> None:
    t = TOPOLOGIES.create("torus2d", rows=rows, cols=cols, bandwidth_Bps=BW)
    n = rows * cols
    assert kinds(t) == {"gpu": n}
    assert t.graph.number_of_edges() == 4 * n
    assert all(d == 4 for _, d in t.graph.out_degree())
    # torus distance = wrapped Manhattan distance
    for b in range(n):
        dr, dc = abs(b // cols), abs(b % cols)
        assert len(t.route(0, b)) == min(dr, rows - dr) + min(dc, cols - dc)


@pytest.mark.parametrize("k", [2, 4, 6])
def test_fat_tree_counts(k: int) -> None:
    t = TOPOLOGIES.create("fat_tree", k=k, bandwidth_Bps=BW)
    h = k // 2
    assert kinds(t) == {"gpu": k**3 // 4, "switch": 5 * k * k // 4}
    # host, edge-agg and agg-core layers each have k^3/4 links, two directions each
    assert t.graph.number_of_edges() == 3 * k**3 // 2
    for node, kind in t.graph.nodes(data="kind"):
        assert t.graph.out_degree(node) == (1 if kind == "gpu" else k)
    # hops: same edge switch 2, same pod 4, other pod 6
    assert len(t.route(0, h * h)) == 6
    if h > 1:
        assert len(t.route(0, 1)) == 2
        assert len(t.route(0, h)) == 4


def test_fat_tree_oversubscription_divides_upper_links() -> None:
    t = TOPOLOGIES.create("fat_tree", k=4, bandwidth_Bps=BW, oversubscription=2.0)
    assert t.graph.edges["edge0.0", "agg0.0"]["bandwidth_Bps"] == BW / 2
    assert t.graph.edges["agg0.0", "core0"]["bandwidth_Bps"] == BW / 2
    assert t.graph.edges["gpu0", "edge0.0"]["bandwidth_Bps"] == BW


def test_fat_tree_dmodk_spreads_all_to_all_evenly() -> None:
    k = 4
    t = TOPOLOGIES.create("fat_tree", k=k, bandwidth_Bps=BW)
    p = t.num_ranks
    load: Counter[int] = Counter()
    for a in range(p):
        for b in range(p):
            if a != b:
                assert_route_is_path(t, a, b)
                load.update(t.route(a, b))
    ups = [t.link_id(f"edge{q}.{e}", f"agg{q}.{a}") for q in range(k) for e in range(2) for a in range(2)]
    cores = [t.link_id(f"agg{q}.{a}", f"core{a * 2 + j}") for q in range(k) for a in range(2) for j in range(2)]
    # every edge uplink carries (hosts under it) x (destinations outside it) / uplinks flows
    assert {load[i] for i in ups} == {2 * (p - 2) // 2}
    assert {load[i] for i in cores} == {4 * (p - 4) // 4}


@pytest.mark.parametrize("fabric", ["switch", "leaf_spine", "fat_tree"])
@pytest.mark.parametrize("nics", [1, 2])
def test_servers_counts(fabric: str, nics: int) -> None:
    s, g = 6, 4
    t = TOPOLOGIES.create("servers", num_servers=s, gpus_per_server=g, intra_bandwidth_Bps=300e9,
                          nic_bandwidth_Bps=BW, nics_per_server=nics, fabric=fabric,
                          servers_per_leaf=2)
    c = kinds(t)
    assert c["gpu"] == s * g and c["nic"] == s * nics
    assert t.servers == [list(range(i * g, (i + 1) * g)) for i in range(s)]
    fabric_switches = {"switch": 1, "leaf_spine": 3 + 2 * nics, "fat_tree": None}[fabric]
    if fabric_switches is not None:
        assert c["switch"] == s + fabric_switches
    # intra-server routes stay on the server switch; inter-server ones leave through a NIC
    assert len(t.route(0, 1)) == 2
    far = t.route(0, g * (s - 1))
    nodes = [t.link_endpoints(i)[1] for i in far]
    assert sum(1 for n in nodes if t.graph.nodes[n]["kind"] == "nic") == 2
    for b in range(s * g):
        assert_route_is_path(t, 0, b)


def test_leaf_spine_oversubscription() -> None:
    t = TOPOLOGIES.create("servers", num_servers=8, gpus_per_server=2, intra_bandwidth_Bps=1e11,
                          nic_bandwidth_Bps=BW, fabric="leaf_spine", servers_per_leaf=4,
                          num_spines=2, oversubscription=2.0)
    up = t.graph.edges["leaf0", "spine0"]["bandwidth_Bps"]
    # leaf down capacity 4 x BW, up capacity 2 x up: ratio 2
    assert 4 * BW / (2 * up) == pytest.approx(2.0)


def test_graph_file_edge_list_and_graphml(tmp_path: Path) -> None:
    el = tmp_path / "net.txt"
    el.write_text("# two GPUs on a switch\ngpuA sw bandwidth_Gbps=100 latency_us=2\ngpuB sw bandwidth_Bps=5e9\n")
    t = make_topology("graph_file", path=str(el), latency_s=3e-6)
    assert t.num_ranks == 2 and t.graph.number_of_edges() == 4
    assert t.graph.edges["gpuA", "sw"]["bandwidth_Bps"] == pytest.approx(12.5e9)
    assert t.graph.edges["sw", "gpuA"]["latency_s"] == pytest.approx(2e-6)
    assert t.graph.edges["gpuB", "sw"]["latency_s"] == pytest.approx(3e-6)
    assert t.route_bandwidth_Bps(0, 1) == 5e9

    g = nx.Graph()
    g.add_node("x0", kind="gpu")
    g.add_node("x1", kind="gpu")
    g.add_node("n", kind="switch")
    g.add_edge("x0", "n", bandwidth_Bps=1e9, latency_s=1e-6)
    g.add_edge("x1", "n", bandwidth_Bps=2e9, latency_s=1e-6)
    path = tmp_path / "net.graphml"
    nx.write_graphml(g, path)
    t2 = make_topology("graph_file", path=str(path))
    assert [str(r) for r in t2.ranks] == ["x0", "x1"]
    assert t2.route_bandwidth_Bps(1, 0) == 1e9
    assert t2.route_latency_s(1, 0) == pytest.approx(2e-6)


def test_graph_file_missing_bandwidth_is_named(tmp_path: Path) -> None:
    el = tmp_path / "net.txt"
    el.write_text("gpu0 sw\n")
    with pytest.raises(TopologyError, match="bandwidth"):
        make_topology("graph_file", path=str(el))


def _two_gpus(bw: float = 1e9) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node("a", kind="gpu")
    g.add_node("b", kind="gpu")
    g.add_edge("a", "b", bandwidth_Bps=bw, latency_s=0.0)
    g.add_edge("b", "a", bandwidth_Bps=bw, latency_s=0.0)
    return g


def test_validation_errors_name_the_fault() -> None:
    g = _two_gpus()
    g.add_node("c", kind="gpu")
    with pytest.raises(TopologyError, match="disconnected"):
        Topology(g, ["a", "b"], "t")
    with pytest.raises(TopologyError, match="bandwidth_Bps=0"):
        Topology(_two_gpus(0.0), ["a", "b"], "t")
    with pytest.raises(TopologyError, match="bandwidth_Bps=-1"):
        Topology(_two_gpus(-1.0), ["a", "b"], "t")
    with pytest.raises(TopologyError, match="3 ranks but only 2 GPUs"):
        Topology(_two_gpus(), ["a", "b", "c"], "t")
    with pytest.raises(TopologyError, match="only 4 GPUs"):
        make_topology("star", 5, num_gpus=4, bandwidth_Bps=BW)
    with pytest.raises(TopologyError, match="bandwidth_Bps"):
        make_topology("star", 4, bandwidth_Bps=0)
    with pytest.raises(TopologyError, match="reverse"):
        g = _two_gpus()
        g.remove_edge("b", "a")
        Topology(g, ["a", "b"], "t")
    with pytest.raises(TopologyError, match="kind"):
        g = _two_gpus()
        g.nodes["a"]["kind"] = "router"
        Topology(g, ["a", "b"], "t")
    with pytest.raises(ConfigError, match="even"):
        make_topology("fat_tree", k=3, bandwidth_Bps=BW)
    with pytest.raises(TopologyError, match="host ports"):
        make_topology("fat_tree", k=4, num_gpus=17, bandwidth_Bps=BW)
    with pytest.raises(ConfigError, match="fabric"):
        make_topology("servers", num_servers=2, gpus_per_server=2, intra_bandwidth_Bps=1e9,
                      nic_bandwidth_Bps=1e9, fabric="mesh")
    with pytest.raises(UnknownNameError, match="fat_tree"):
        make_topology("dragonfly", 4)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        make_topology("star", 4, bandwidth_Bps=BW, speed=3)


def test_make_topology_derives_sizes() -> None:
    assert make_topology("star", 7, bandwidth_Bps=BW).num_ranks == 7
    ft = make_topology("fat_tree", 20, bandwidth_Bps=BW)
    assert ft.num_ranks == 20 and kinds(ft)["switch"] == 5 * 36 // 4  # k = 6
    assert make_topology("torus2d", 12, bandwidth_Bps=BW).name == "torus2d(3x4)"
    sv = make_topology("servers", 12, gpus_per_server=8, intra_bandwidth_Bps=1e11, nic_bandwidth_Bps=BW)
    assert sv.num_ranks == 12 and sv.servers == [list(range(8)), [8, 9, 10, 11]]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 14), extra=st.integers(0, 20), seed=st.integers(0, 10_000))
def test_routes_are_shortest_paths_on_random_graphs(n: int, extra: int, seed: int) -> None:
    und = nx.random_labeled_tree(n, seed=seed) if hasattr(nx, "random_labeled_tree") else nx.random_tree(n, seed=seed)
    rnd = nx.gnm_random_graph(n, extra, seed=seed)
    und.add_edges_from(rnd.edges)
    g = nx.DiGraph()
    for v in range(n):
        g.add_node(f"gpu{v}", kind="gpu")
    for u, v in und.edges:
        g.add_edge(f"gpu{u}", f"gpu{v}", bandwidth_Bps=1e9, latency_s=1e-6)
        g.add_edge(f"gpu{v}", f"gpu{u}", bandwidth_Bps=1e9, latency_s=1e-6)
    t = Topology(g, [f"gpu{v}" for v in range(n)], "random")
    hops = dict(nx.all_pairs_shortest_path_length(und))
    for a in range(n):
        for b in range(n):
            assert_route_is_path(t, a, b)
            assert len(t.route(a, b)) == hops[a][b]


@pytest.mark.parametrize(
    "topo",
    [
        make_topology("star", 5, bandwidth_Bps=BW),
        make_topology("fat_tree", 16, bandwidth_Bps=BW),
        make_topology("servers", 8, gpus_per_server=4, intra_bandwidth_Bps=1e11, nic_bandwidth_Bps=BW,
                      fabric="leaf_spine", servers_per_leaf=1),
    ],
    ids=["star", "fat_tree", "servers"],
)
def test_drawing_data_covers_every_node(topo: Topology) -> None:
    pos = topo.positions()
    kinds_by_name = topo.node_kinds()
    assert set(pos) == set(kinds_by_name) == {str(n) for n in topo.graph.nodes}
    assert len(set(pos.values())) == len(pos)  # no two nodes drawn on top of each other
    assert set(kinds_by_name.values()) <= {"gpu", "nic", "switch"}


def test_with_ranks_trims_ranks_and_servers() -> None:
    t = make_topology("servers", num_servers=3, gpus_per_server=4, intra_bandwidth_Bps=1e11,
                      nic_bandwidth_Bps=BW)
    t6 = t.with_ranks(6)
    assert t6.num_ranks == 6 and t6.servers == [[0, 1, 2, 3], [4, 5]]
    assert t6.graph.number_of_nodes() == t.graph.number_of_nodes()
    with pytest.raises(TopologyError, match="only 12 GPUs"):
        t.with_ranks(13)


@pytest.mark.parametrize("g", [1, 2, 4, 8])
def test_servers_mesh_counts(g: int) -> None:
    s = 3
    t = make_topology("servers", num_servers=s, gpus_per_server=g, intra_bandwidth_Bps=5e10,
                      nic_bandwidth_Bps=BW, intra="mesh")
    # per server: g(g-1)/2 GPU pairs + g GPU-PCIe + PCIe-NIC + NIC-fabric links, both ways
    assert t.graph.number_of_edges() == 2 * s * (g * (g - 1) // 2 + g + 2)
    assert kinds(t) == {"gpu": s * g, "nic": s, "switch": s + 1}
    for node in t.ranks:
        assert t.graph.out_degree(node) == g  # g-1 peers + the PCIe switch
    if g > 1:
        assert len(t.route(0, 1)) == 1
    assert len(t.route(0, g)) == 6
    with pytest.raises(ConfigError, match="intra"):
        make_topology("servers", num_servers=s, gpus_per_server=g, intra_bandwidth_Bps=5e10,
                      nic_bandwidth_Bps=BW, intra="torus")
