"""Collectives against the closed forms of reference/collectives.md, plus contention cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwire.errors import ConfigError, UnknownNameError
from gradwire.simulator import analytic
from gradwire.simulator.collectives import COLLECTIVES, run_collective
from gradwire.simulator.network import Network
from gradwire.simulator.topology import make_topology

REL = 1e-9  # the engine is exact up to float rounding; the issue asks for 1%

p_st = st.integers(2, 16)
bytes_st = st.floats(1e3, 1e8)
bw_st = st.floats(1e8, 1e11)
lat_st = st.floats(0.0, 1e-4)
ovh_st = st.floats(0.0, 1e-4)


def star(p: int, bw: float, lat: float):
    return make_topology("star", p, bandwidth_Bps=bw, latency_s=lat)


@settings(max_examples=30, deadline=None)
@given(p=p_st, m=bytes_st, bw=bw_st, lat=lat_st, ovh=ovh_st)
def test_ring_allreduce_matches_closed_form(p: int, m: float, bw: float, lat: float, ovh: float) -> None:
    run = run_collective(star(p, bw, lat), "ring_allreduce", m, per_message_overhead_s=ovh)
    alpha = 2 * lat + ovh
    assert run.time_s == pytest.approx(analytic.ring_allreduce_time(p, m, alpha, bw), rel=REL)
    assert run.n_transfers == 2 * p * (p - 1)


@settings(max_examples=20, deadline=None)
@given(p=p_st, m=bytes_st, bw=bw_st, lat=lat_st, ovh=ovh_st)
def test_ring_reduce_scatter_matches_closed_form(p: int, m: float, bw: float, lat: float, ovh: float) -> None:
    run = run_collective(star(p, bw, lat), "ring_reduce_scatter", m, per_message_overhead_s=ovh)
    expect = (p - 1) * (2 * lat + ovh) + (p - 1) / p * m / bw
    assert run.time_s == pytest.approx(expect, rel=REL)
    assert run.time_s == pytest.approx(analytic.ring_reduce_scatter_time(p, m, 2 * lat + ovh, bw), rel=REL)


@settings(max_examples=15, deadline=None)
@given(p=st.integers(3, 12), m=bytes_st, bw=bw_st, lat=lat_st)
def test_ring_allreduce_on_a_ring_of_dedicated_links(p: int, m: float, bw: float, lat: float) -> None:
    topo = make_topology("ring", p, bandwidth_Bps=bw, latency_s=lat)
    run = run_collective(topo, "ring_allreduce", m)
    assert run.time_s == pytest.approx(analytic.ring_allreduce_time(p, m, lat, bw), rel=REL)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.floats(0.0, 1e7), min_size=2, max_size=16), bw=bw_st, lat=lat_st, ovh=ovh_st)
def test_ring_allgather_unequal_sizes_lock_step_max_chunk(sizes: list[float], bw: float, lat: float,
                                                          ovh: float) -> None:
    p = len(sizes)
    run = run_collective(star(p, bw, lat), "ring_allgather", sizes, per_message_overhead_s=ovh)
    expect = analytic.ring_allgather_time(sizes, 2 * lat + ovh, bw)
    assert run.time_s == pytest.approx(expect, rel=REL)
    # every rank receives every other rank's payload exactly once
    r = run.records
    for j in range(p):
        got = r.nbytes[r.dst == j].sum()
        assert got == pytest.approx(sum(sizes) - sizes[j], rel=1e-12, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(p=st.integers(2, 20), m=bytes_st, bw=bw_st, lat=lat_st, ovh=ovh_st)
def test_halving_doubling_matches_closed_form(p: int, m: float, bw: float, lat: float, ovh: float) -> None:
    run = run_collective(star(p, bw, lat), "halving_doubling_allreduce", m, per_message_overhead_s=ovh)
    expect = analytic.halving_doubling_time(p, m, 2 * lat + ovh, bw)
    assert run.time_s == pytest.approx(expect, rel=REL)
    if p & (p - 1) == 0:
        closed = 2 * math.log2(p) * (2 * lat + ovh) + 2 * (p - 1) / p * m / bw
        assert run.time_s == pytest.approx(closed, rel=REL)


@settings(max_examples=30, deadline=None)
@given(p=st.integers(2, 20), m=bytes_st, bw=bw_st, lat=lat_st, ovh=ovh_st)
def test_tree_allreduce_matches_closed_form(p: int, m: float, bw: float, lat: float, ovh: float) -> None:
    run = run_collective(star(p, bw, lat), "tree_allreduce", m, per_message_overhead_s=ovh)
    c = 2 * lat + ovh + m / bw
    assert run.time_s == pytest.approx(analytic.tree_allreduce_time(p, m, 2 * lat + ovh, bw), rel=REL)
    # full binary trees: reduce takes 2 steps per level, the broadcast 1 or 2 per level
    depth = math.ceil(math.log2(p + 1)) - 1
    assert 2 * depth * c * (1 - REL) <= run.time_s <= 4 * depth * c * (1 + REL)
    if p == 2**(depth + 1) - 1:
        assert run.time_s == pytest.approx(4 * depth * c, rel=REL)


def test_double_tree_between_half_and_full_single_tree() -> None:
    topo = star(15, 1e9, 1e-6)
    single = run_collective(topo, "tree_allreduce", 1e7).time_s
    double = run_collective(topo, "tree_allreduce", 1e7, double=True).time_s
    half = analytic.tree_allreduce_time(15, 5e6, 2e-6, 1e9)
    assert half * (1 - REL) <= double < single


@settings(max_examples=25, deadline=None)
@given(p=st.integers(2, 16), m=bytes_st, bw=bw_st, lat=lat_st, root=st.integers(0, 15))
def test_broadcast_matches_binomial_closed_form(p: int, m: float, bw: float, lat: float, root: int) -> None:
    root %= p
    sizes = [0.0] * p
    sizes[root] = m
    run = run_collective(star(p, bw, lat), "broadcast", sizes, root=root)
    assert run.time_s == pytest.approx(analytic.broadcast_time(p, m, 2 * lat, bw), rel=REL)
    assert set(run.records.dst.tolist()) == set(range(p)) - {root}


@settings(max_examples=25, deadline=None)
@given(p=st.integers(1, 16), m=bytes_st, bw=bw_st, lat=lat_st, pull=st.booleans())
def test_parameter_server_incast(p: int, m: float, bw: float, lat: float, pull: bool) -> None:
    # p workers (ranks 1..p) and one dedicated server (rank 0): the server link is the incast
    topo = star(p + 1, bw, lat)
    run = run_collective(topo, "parameter_server", m, ranks=list(range(1, p + 1)), servers=[0], pull=pull)
    one = 2 * lat + p * m / bw
    assert run.time_s == pytest.approx(2 * one if pull else one, rel=REL)
    assert run.time_s == pytest.approx(
        analytic.parameter_server_time(p, m, 2 * lat, bw, colocated=False, pull=pull), rel=REL)


@settings(max_examples=20, deadline=None)
@given(p=st.integers(2, 12), m=bytes_st, bw=bw_st, lat=lat_st, s=st.integers(1, 12))
def test_parameter_server_sharded_colocated(p: int, m: float, bw: float, lat: float, s: int) -> None:
    s = min(s, p)
    run = run_collective(star(p, bw, lat), "parameter_server", m, num_servers=s)
    expect = analytic.parameter_server_time(p, m, 2 * lat, bw, num_servers=s)
    assert run.time_s == pytest.approx(expect, rel=REL)
    if s == p:
        assert run.time_s == pytest.approx(2 * (2 * lat) + 2 * (p - 1) / p * m / bw, rel=REL)


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.floats(1e3, 1e7), min_size=2, max_size=12), bw=bw_st, lat=lat_st,
       dec=st.floats(0, 1e-3), enc=st.floats(0, 1e-3))
def test_compressed_allreduce_charges_codec_time_every_hop(sizes: list[float], bw: float, lat: float,
                                                           dec: float, enc: float) -> None:
    """Decode + re-encode at each of the p-1 reduce-scatter hops, nothing in the allgather."""
    p = len(sizes)
    run = run_collective(star(p, bw, lat), "compressed_allreduce", sizes, hop_decode_s=dec, hop_encode_s=enc)
    expect = analytic.compressed_allreduce_time(sizes, 2 * lat, bw, dec + enc)
    assert run.time_s == pytest.approx(expect, rel=REL)


def servers_topo(s: int, g: int, nic_latency_s: float = 5e-6, fabric: str = "switch"):
    return make_topology("servers", num_servers=s, gpus_per_server=g, intra_bandwidth_Bps=300e9,
                         intra_latency_s=1e-6, nic_bandwidth_Bps=12.5e9, nic_latency_s=nic_latency_s,
                         fabric=fabric)


@pytest.mark.parametrize(("s", "g"), [(1, 8), (4, 1), (4, 8), (3, 4)])
@pytest.mark.parametrize("fabric", ["switch", "fat_tree", "leaf_spine"])
def test_hierarchical_matches_closed_form(s: int, g: int, fabric: str) -> None:
    topo = servers_topo(s, g, fabric=fabric)
    m = 64e6
    run = run_collective(topo, "hierarchical_allreduce", m, per_message_overhead_s=2e-6)
    assert run.time_s == pytest.approx(
        analytic.closed_form(topo, "hierarchical_allreduce", m, per_message_overhead_s=2e-6), rel=1e-6)
    intra_alpha = 2e-6 + 2e-6
    inter_alpha = topo.route_latency_s(0, g % topo.num_ranks) + 2e-6
    expect = analytic.hierarchical_allreduce_time(g, s, m, intra_alpha, 300e9, inter_alpha, 12.5e9)
    assert run.time_s == pytest.approx(expect, rel=1e-2)


@pytest.mark.parametrize("fabric", ["switch", "fat_tree", "leaf_spine"])
def test_hierarchical_spreads_rings_over_two_nics(fabric: str) -> None:
    s, g, m = 8, 8, 64e6
    topo = make_topology("servers", num_servers=s, gpus_per_server=g, intra_bandwidth_Bps=300e9,
                         intra_latency_s=1e-6, nic_bandwidth_Bps=12.5e9, nic_latency_s=5e-6,
                         nics_per_server=2, fabric=fabric)
    run = run_collective(topo, "hierarchical_allreduce", m)
    # lock-step: every inter-server step lasts as long as its farthest pair of servers
    inter_alpha = max(topo.route_latency_s(i * g + j, (i + 1) % s * g + j) for i in range(s) for j in range(g))
    expect = analytic.hierarchical_allreduce_time(g, s, m, 2e-6, 300e9, inter_alpha, 2 * 12.5e9)
    assert run.time_s == pytest.approx(expect, rel=REL)


@pytest.mark.parametrize(("s", "g"), [(4, 8), (3, 2)])
def test_hierarchical_on_nvlink_mesh_servers_matches_closed_form(s: int, g: int) -> None:
    topo = make_topology("servers", num_servers=s, gpus_per_server=g, intra_bandwidth_Bps=50e9,
                         intra_latency_s=1e-6, nic_bandwidth_Bps=12.5e9, nic_latency_s=5e-6,
                         intra="mesh")
    m = 32e6
    run = run_collective(topo, "hierarchical_allreduce", m)
    inter_alpha = topo.route_latency_s(0, g)
    expect = analytic.hierarchical_allreduce_time(g, s, m, 1e-6, 50e9, inter_alpha, 12.5e9)
    assert run.time_s == pytest.approx(expect, rel=REL)


def test_hierarchical_beats_flat_ring_when_inter_server_is_the_bottleneck() -> None:
    topo = servers_topo(4, 8, nic_latency_s=10e-6)
    m = 10e6
    flat = run_collective(topo, "ring_allreduce", m)
    hier = run_collective(topo, "hierarchical_allreduce", m)
    assert hier.time_s < 0.75 * flat.time_s
    # the flat ring is paced by its slowest hop, the inter-server one, at every step
    inter_alpha = topo.route_latency_s(7, 8)
    assert flat.time_s == pytest.approx(analytic.ring_allreduce_time(32, m, inter_alpha, 12.5e9), rel=REL)
    # with an inter-server network as fast and near as NVLink, the extra phases cost more
    fast = make_topology("servers", num_servers=4, gpus_per_server=8, intra_bandwidth_Bps=300e9,
                         nic_bandwidth_Bps=300e9, intra_latency_s=0.0, nic_latency_s=0.0)
    assert (run_collective(fast, "hierarchical_allreduce", m).time_s
            > run_collective(fast, "ring_allreduce", m).time_s)


@pytest.mark.parametrize("over", [1.0, 2.0, 4.0])
def test_oversubscribed_fat_tree_all_to_all_slowdown_matches_bisection(over: float) -> None:
    k, bw, m = 4, 1e9, 16e6
    topo = make_topology("fat_tree", k=k, bandwidth_Bps=bw, latency_s=0.0, oversubscription=over)
    p = topo.num_ranks
    t = run_collective(topo, "alltoall", m).time_s
    # host links carry (p-1) chunks of M/p; each edge switch's k/2 uplinks of B/over carry
    # (k/2)(p - k/2) chunks: the slower of the two bounds the exchange
    host = (p - 1) * (m / p) / bw
    uplink = (k // 2) * (p - k // 2) * (m / p) / (k // 2 * bw / over)
    assert t == pytest.approx(max(host, uplink), rel=1e-9)
    if over == 2.0:
        assert t / host == pytest.approx(2 * (p - k / 2) / (p - 1), rel=1e-9)
    assert run_collective(topo, "alltoall", m).time_s == t


@pytest.mark.parametrize("over", [1.0, 2.0, 3.0])
def test_oversubscribed_leaf_spine_all_to_all(over: float) -> None:
    # 8 single-GPU servers, 4 per leaf, 4 spines: the leaf's 4 uplinks carry 4 x 4 chunks
    nic, m = 1e9, 8e6
    topo = make_topology("servers", num_servers=8, gpus_per_server=1, intra_bandwidth_Bps=1e12,
                         nic_bandwidth_Bps=nic, intra_latency_s=0.0, nic_latency_s=0.0,
                         fabric="leaf_spine", servers_per_leaf=4, oversubscription=over)
    p, per_leaf, spines = 8, 4, 4
    up = per_leaf * nic / (spines * over)
    host = (p - 1) * (m / p) / nic
    uplink = per_leaf * (p - per_leaf) * (m / p) / (spines * up)
    assert run_collective(topo, "alltoall", m).time_s == pytest.approx(max(host, uplink), rel=1e-9)


def test_alltoall_on_a_star_matches_closed_form() -> None:
    p, m = 9, 9e6
    t = run_collective(star(p, 1e9, 1e-6), "alltoall", m).time_s
    assert t == pytest.approx(2e-6 + (p - 1) / p * m / 1e9, rel=REL)


def test_collectives_on_a_fat_tree_give_identical_traces() -> None:
    def once():
        topo = make_topology("servers", num_servers=8, gpus_per_server=4, intra_bandwidth_Bps=2e11,
                             nic_bandwidth_Bps=1e10, fabric="fat_tree", oversubscription=2.0)
        env = simpy.Environment()
        net = Network(env, topo, per_message_overhead_s=3e-6)
        ranks = list(range(32))
        procs = [env.process(COLLECTIVES.get(n)(net, ranks, [4e6] * 32))
                 for n in ("ring_allreduce", "hierarchical_allreduce", "tree_allreduce")]
        env.run(until=simpy.AllOf(env, procs))
        return net.trace(), net.link_busy_s.tolist(), env.now

    assert once() == once()


def test_two_concurrent_rings_on_the_same_ranks_share_every_link() -> None:
    p, m, bw, lat = 8, 8e6, 1e9, 1e-6
    env = simpy.Environment()
    net = Network(env, star(p, bw, lat))
    fn = COLLECTIVES.get("ring_allreduce")
    procs = [env.process(fn(net, list(range(p)), [m] * p, tag=t)) for t in ("a", "b")]
    env.run(until=simpy.AllOf(env, procs))
    # each step both rings' chunks share each link: the bandwidth term doubles, alpha does not
    assert env.now == pytest.approx(2 * (p - 1) * (2 * lat + 2 * (m / p) / bw), rel=REL)
    # on disjoint halves they do not interfere
    env2 = simpy.Environment()
    net2 = Network(env2, star(p, bw, lat))
    procs = [env2.process(fn(net2, half, [m] * 4)) for half in ([0, 1, 2, 3], [4, 5, 6, 7])]
    env2.run(until=simpy.AllOf(env2, procs))
    assert env2.now == pytest.approx(analytic.ring_allreduce_time(4, m, 2 * lat, bw), rel=REL)


def test_single_rank_collectives_take_no_time() -> None:
    topo = star(1, 1e9, 1e-6)
    for name in COLLECTIVES.names():
        if name == "hierarchical_allreduce":
            continue
        assert run_collective(topo, name, 1e6).time_s == 0.0, name


def test_closed_form_backend_agrees_on_a_star() -> None:
    topo = star(8, 1e9, 1e-6)
    for name in COLLECTIVES.names():
        # hierarchical needs servers; gloo_* model one library's segmented pipeline, whose
        # latency terms hide behind the segment in flight (checked below and in validation)
        if name == "hierarchical_allreduce" or name.startswith("gloo_"):
            continue
        sim = run_collective(topo, name, 2e6, per_message_overhead_s=4e-6, efficiency=0.9).time_s
        cf = analytic.closed_form(topo, name, 2e6, per_message_overhead_s=4e-6, efficiency=0.9)
        assert sim == pytest.approx(cf, rel=REL), name


def test_collective_errors_are_clear() -> None:
    topo = star(4, 1e9, 1e-6)
    with pytest.raises(UnknownNameError, match="ring_allreduce"):
        run_collective(topo, "butterfly", 1e6)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        run_collective(topo, "ring_allreduce", 1e6, chunks=4)
    with pytest.raises(ConfigError, match="one size per rank"):
        run_collective(topo, "ring_allgather", [1.0, 2.0])
    with pytest.raises(ConfigError, match="servers"):
        run_collective(topo, "hierarchical_allreduce", 1e6)
    with pytest.raises(ConfigError, match="root"):
        run_collective(topo, "broadcast", 1e6, root=7)
    with pytest.raises(ConfigError, match="hop_decode_s"):
        run_collective(topo, "compressed_allreduce", 1e6, hop_decode_s=-1.0)
    with pytest.raises(ConfigError, match="num_servers"):
        run_collective(topo, "parameter_server", 1e6, num_servers=9)
    with pytest.raises(ConfigError, match="distinct"):
        run_collective(topo, "ring_allreduce", 1e6, ranks=[0, 0, 1])
    uneven = make_topology("servers", 6, gpus_per_server=4, intra_bandwidth_Bps=1e11, nic_bandwidth_Bps=1e10)
    with pytest.raises(ConfigError, match="same number of ranks"):
        run_collective(uneven, "hierarchical_allreduce", 1e6)


def test_records_and_link_usage_of_a_ring() -> None:
    p, m, bw = 4, 4e6, 1e9
    run = run_collective(star(p, bw, 0.0), "ring_allreduce", m)
    r = run.records
    assert len(r) == run.n_transfers == 2 * p * (p - 1)
    np.testing.assert_allclose(r.nbytes, m / p)
    assert np.all(r.end_s > r.start_s)
    assert set(r.tag.tolist()) == {f"ring_allreduce:{k}" for k in range(2 * (p - 1))}
    for use in run.links:
        # every GPU link carries 2(p-1) chunks and is busy for exactly that long
        assert use.bytes == pytest.approx(2 * (p - 1) * m / p)
        assert use.busy_s == pytest.approx(run.time_s, rel=1e-12)
        assert use.utilization == pytest.approx(1.0)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_gloo_rings_move_the_ring_bandwidth_term(p: int) -> None:
    """With no latency and no overhead, gloo's segmented rings cost exactly the bandwidth
    terms of the alpha-beta ring: 2(p-1)/p M/B (allreduce), (p-1) m/B (allgather)."""
    topo = star(p, 1e9, 0.0)
    m = 6e6
    ar = run_collective(topo, "gloo_ring_allreduce", m).time_s
    assert ar == pytest.approx(2 * (p - 1) / p * m / 1e9, rel=1e-9)
    ag = run_collective(topo, "gloo_ring_allgather", m / p).time_s
    assert ag == pytest.approx((p - 1) * (m / p) / 1e9, rel=1e-9)


def test_gloo_pair_allgather_runs_the_two_directions_one_after_the_other() -> None:
    topo = star(2, 1e9, 2e-6)
    t = run_collective(topo, "gloo_pair_allgather", [3e6, 1e6], per_message_overhead_s=5e-6).time_s
    alpha = 2 * 2e-6 + 5e-6
    assert t == pytest.approx(2 * alpha + 4e6 / 1e9, rel=1e-9)
    with pytest.raises(ConfigError, match="exactly 2 ranks"):
        run_collective(star(3, 1e9, 2e-6), "gloo_pair_allgather", 1e6)


def test_every_registered_collective_is_declared_completely() -> None:
    """Walk the registry: each collective declares what it carries and delivers, and its
    closed form (checked against the engine on a contention-free star) or why it has none."""
    from gradwire.simulator.collectives.base import COLLECTIVE_INFO, collective_info

    assert set(COLLECTIVE_INFO) == set(COLLECTIVES.names())
    topo = star(4, 1.25e9, 2e-6)
    for name in COLLECTIVES.names():
        info = collective_info(name)
        assert info.carries in ("sum", "payload", "any", "none")
        assert info.delivers in ("reduced", "all", "chunks")
        assert info.decodes(4) in (1, 3, 4)
        if info.requantizes:
            assert "hop_decode_s" in info.fn.__code__.co_varnames and "work" in info.fn.__code__.co_varnames
        if name == "hierarchical_allreduce":
            continue  # needs servers; checked against its closed form in its own tests
        if info.closed_form is None:
            assert info.no_closed_form_why
            with pytest.raises(ConfigError, match="no closed form"):
                analytic.closed_form(topo, name, 1e6)
            continue
        engine = run_collective(topo, name, 1e6).time_s
        assert engine == pytest.approx(analytic.closed_form(topo, name, 1e6), rel=1e-9), name

