"""NCCL's allreduce: pipelined trees, channels over NICs, protocols and the tuning choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwire.errors import ConfigError
from gradwire.simulator import analytic, nccl
from gradwire.simulator.collectives import run_collective
from gradwire.simulator.collectives.base import check_options
from gradwire.simulator.timeline import BucketCost, IterationSpec, simulate_iteration
from gradwire.simulator.topology import make_topology, servers

REL = 1e-9


def star(p: int, bw: float, lat: float = 0.0):
    return make_topology("star", p, bandwidth_Bps=bw, latency_s=lat)


# ---------------------------------------------------------------------- pipelined tree
@settings(max_examples=25, deadline=None)
@given(p=st.integers(2, 12), m=st.floats(1e4, 5e7), chunk=st.floats(2e3, 4e6),
       lat=st.floats(0.0, 2e-5), proto=st.sampled_from(nccl.PROTOCOLS))
def test_tree_engine_equals_its_closed_form(p: int, m: float, chunk: float, lat: float, proto: str) -> None:
    topo = star(p, 1e10, lat)
    opts = {"algorithm": "tree", "protocol": proto, "chunk_bytes": chunk, "channels": 1}
    t = run_collective(topo, "nccl_allreduce", m, **opts).time_s
    assert t == pytest.approx(analytic.closed_form(topo, "nccl_allreduce", m, **opts), rel=REL)


@pytest.mark.parametrize("p", [4, 7, 8, 13])
def test_pipelined_tree_approaches_the_double_tree_bandwidth_bound(p: int) -> None:
    """On a non-blocking switch (each rank one full-duplex link of B) the double binary
    tree moves through its busiest rank n·M/2 (half the buffer per tree, once per tree
    edge at the rank: up once and down to two children where it is inner, up once where
    it is a leaf: n = 4 and 2M/B from five ranks on). Pipelined in C chunks per tree over
    ``C + 2H - 1`` steps, its bandwidth time lies in ``[nM/(2fB), nM/(2fB)·(C + 2H - 1)/C]``;
    more chunks only shrink the fill and add one route latency per step."""
    bw, m, lat = 1e10, 4e8, 3e-6
    topo = star(p, bw, lat)
    h = math.floor(math.log2(p))  # height of a heap-ordered tree of p nodes
    # busiest rank: inner (2 children + a parent) in one tree, a leaf under a parent in the other
    links = np.zeros(p, dtype=int)
    for order in (np.arange(p), np.arange(p)[::-1]):
        for pos in range(1, p):
            links[order[pos]] += 1
            links[order[(pos - 1) // 2]] += 1
    assert links.max() <= 4  # never above 2M/B, at 2M/B from 5 ranks on
    if p >= 5:
        assert links.max() == 4
    bound = links.max() * (m / 2) / (nccl.BANDWIDTH_FRACTION["tree"]["simple"] * bw)
    layout = nccl.layout_of(topo, np.arange(p))
    proto_lat = nccl.latency_s("tree", "simple", layout)
    prev_bw_term = math.inf
    for chunks in (4, 32, 256):
        chunk = m / 2 / chunks
        t = run_collective(topo, "nccl_allreduce", m, algorithm="tree", protocol="simple",
                           channels=1, chunk_bytes=chunk).time_s
        steps = chunks + 2 * h - 1
        bw_term = t - proto_lat - steps * 2 * lat
        assert bound * (1 - REL) <= bw_term <= bound * steps / chunks * (1 + REL)
        assert bw_term < prev_bw_term  # a finer pipeline fills faster
        prev_bw_term = bw_term
    assert prev_bw_term == pytest.approx(bound, rel=(2 * h - 1) / 256)


def test_tree_is_a_chain_inside_a_server_and_a_double_tree_across_servers() -> None:
    grid = np.arange(12).reshape(3, 4)
    t0, t1 = nccl.tree_channels(grid, 1)
    # tree 0: chains 0-1-2-3, 4-5-6-7, 8-9-10-11 headed at local 0; servers 1 and 2 under 0
    assert t0.parent.tolist() == [-1, 0, 1, 2, 0, 4, 5, 6, 0, 8, 9, 10]
    # tree 1: chains headed at local 2 (2-3-0-1, ...), servers reversed: server 2 the root
    assert t1.parent.tolist() == [3, 0, 10, 2, 7, 4, 10, 6, 11, 8, -1, 10]
    assert int(t0.height[0]) == 4 and int(t0.depth.max()) == 4


# ---------------------------------------------------------------------- channels and NICs
@pytest.mark.parametrize("k", [2, 4])
def test_channels_over_one_nic_share_it_and_over_k_nics_divide_the_time(k: int) -> None:
    """Two servers of 4 GPUs, NVLink far faster than the NICs: every ring step puts one
    M/(k·p) chunk per channel across each server boundary, so a server's NICs carry
    M/p per step. Over one NIC the bandwidth term is 2(p-1)·M/(p·B) whatever k; over k
    NICs each channel leaves through its own NIC and the term is k times smaller."""
    m, b_nic = 3.2e8, 1e9
    p = 8

    def bw_term(nics: int, channels: int) -> float:
        topo = servers(2, 4, 1e15, b_nic, intra_latency_s=0.0, nic_latency_s=0.0, nics_per_server=nics)
        t = run_collective(topo, "nccl_allreduce", m, algorithm="ring", protocol="simple",
                           channels=channels).time_s
        layout = nccl.layout_of(topo, np.arange(p))
        return t - nccl.latency_s("ring", "simple", layout)

    one = 2 * (p - 1) * m / (p * b_nic)
    assert bw_term(1, 1) == pytest.approx(one, rel=REL)
    assert bw_term(1, k) == pytest.approx(one, rel=REL)
    assert bw_term(k, k) == pytest.approx(one / k, rel=REL)


def test_ring_channels_enter_each_server_at_a_different_gpu() -> None:
    grid = np.arange(8).reshape(2, 4)
    orders = nccl.ring_orders(grid, 4)
    assert orders[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert orders[1].tolist() == [1, 2, 3, 0, 5, 6, 7, 4]
    entries = {int(o[4]) for o in orders}
    assert entries == {4, 5, 6, 7}


def test_default_channels_follow_the_nics() -> None:
    one = nccl.layout_of(servers(1, 8, 2e11, 2.5e10, nics_per_server=8), np.arange(8))
    two = nccl.layout_of(servers(2, 8, 2e11, 2.5e10, nics_per_server=8), np.arange(16))
    few = nccl.layout_of(servers(2, 8, 2e11, 2.5e10, nics_per_server=2), np.arange(16))
    assert nccl.default_channels(one) == 2
    assert nccl.default_channels(two) == 16
    assert nccl.default_channels(few) == 4
    assert two.server_net_Bps == pytest.approx(8 * 2.5e10)


# ---------------------------------------------------------------------- protocol choice
def test_protocol_choice_follows_the_documented_crossovers() -> None:
    """Ring on one server of 8 GPUs, NVLink hops: NCCL's tables give latencies
    LL 6.6 + 14·0.6 us, LL128 14 + 14·1.9 us, Simple 8.4 + 14·3.4 us, and bus bandwidth
    fractions 1/4, 0.92, 1 of B (algbw = busbw·8/14). Small messages pick LL, mid-size
    LL128, large Simple, switching where the predicted times cross."""
    b = 2.4e11
    layout = nccl.layout_of(servers(1, 8, b, 2.5e10), np.arange(8))
    lat = {"ll": 6.6e-6 + 14 * 0.6e-6, "ll128": 14e-6 + 14 * 1.9e-6, "simple": 8.4e-6 + 14 * 3.4e-6}
    algbw = {"ll": 0.25 * b * 8 / 14, "ll128": 0.92 * b * 8 / 14, "simple": b * 8 / 14}

    def cross(a: str, c: str) -> float:
        return (lat[c] - lat[a]) / (1 / algbw[a] - 1 / algbw[c])

    x1, x2 = cross("ll", "ll128"), cross("ll128", "simple")
    assert x1 < x2
    assert nccl.crossover_bytes(("ring", "ll"), ("ring", "ll128"), layout) == pytest.approx(x1, rel=REL)
    for m, want in [(1e3, "ll"), (x1 * 0.99, "ll"), (x1 * 1.01, "ll128"), (x2 * 0.99, "ll128"),
                    (x2 * 1.01, "simple"), (1e10, "simple")]:
        assert nccl.choose(m, layout, algorithm="ring") == ("ring", want), m
    # without LL128 (NCCL off NVLink) LL hands over to Simple where those two cross
    no128 = nccl.layout_of(servers(1, 8, b, 2.5e10), np.arange(8), ll128=False)
    x3 = cross("ll", "simple")
    assert nccl.choose(x3 * 0.99, no128, algorithm="ring") == ("ring", "ll")
    assert nccl.choose(x3 * 1.01, no128, algorithm="ring") == ("ring", "simple")


def test_two_servers_prefer_the_tree_for_large_buffers() -> None:
    """Across two servers a double tree sends M through a server's NICs where a ring sends
    2(p-1)/p·M, so with the NICs the bottleneck the tree wins at large sizes."""
    topo = servers(2, 8, 3.7e11, 2.5e10, nics_per_server=8)
    layout = nccl.layout_of(topo, np.arange(16))
    assert nccl.choose(8e9, layout) == ("tree", "simple")
    ring = nccl.algorithm_Bps("ring", "simple", layout)
    tree = nccl.algorithm_Bps("tree", "simple", layout)
    assert ring == pytest.approx(16 / 30 * 2e11)
    assert tree == pytest.approx(0.92 * min(3.7e11 / 2, 2e11))


# ---------------------------------------------------------------------- settings
def test_options_are_checked_by_name_and_value() -> None:
    assert check_options("nccl_allreduce", {"algorithm": "tree", "protocol": "ll128"}, "exchange.summable_options") == []
    bad = check_options("nccl_allreduce", {"algo": "tree"}, "exchange.summable_options")
    assert bad and "algo" in bad[0] and "algorithm" in bad[0]
    # values are checked with the scenario, every bad one named
    vals = check_options("nccl_allreduce", {"algorithm": "halving", "channels": 1.5, "ll128": "no"},
                         "exchange.summable_options")
    assert [v.split(":")[0] for v in vals] == ["exchange.summable_options.algorithm",
                                               "exchange.summable_options.channels",
                                               "exchange.summable_options.ll128"]
    topo = star(4, 1e9)
    with pytest.raises(ConfigError, match=r"exchange\.summable_options\.algorithm"):
        run_collective(topo, "nccl_allreduce", 1e6, algorithm="halving")
    with pytest.raises(ConfigError, match=r"exchange\.summable_options\.protocol"):
        run_collective(topo, "nccl_allreduce", 1e6, protocol="fast")
    with pytest.raises(ConfigError, match="channels"):
        run_collective(topo, "nccl_allreduce", 1e6, channels=-1)
    with pytest.raises(ConfigError, match="ll128 is disabled"):
        run_collective(topo, "nccl_allreduce", 1e6, protocol="ll128", ll128=False)


def test_forced_setting_runs_inside_an_iteration() -> None:
    """One bucket, no compute: the iteration's communication is the collective alone."""
    topo = servers(2, 4, 2e11, 2.5e10, nics_per_server=2)
    m = 2.5e7
    spec = IterationSpec(0.0, 0.0, 0.0, (BucketCost(m // 4, 0.0, (m,), 0.0, 0.0),),
                         "nccl_allreduce", {"algorithm": "tree", "protocol": "ll128"})
    res = simulate_iteration(spec, topo)
    alone = run_collective(topo, "nccl_allreduce", m, algorithm="tree", protocol="ll128").time_s
    assert res.iteration_s == pytest.approx(alone, rel=REL)


def test_profiles_build_their_systems() -> None:
    a100 = nccl.profile_topology("a100_8x_node")
    assert a100.num_ranks == 8
    lay = nccl.layout_of(a100, np.arange(8))
    assert lay.gpu_Bps == pytest.approx(12 * 20.0e9)
    h100 = nccl.layout_of(nccl.profile_topology("h100_a3mega_2x8"), np.arange(16))
    assert h100.servers == 2 and h100.server_net_Bps == pytest.approx(8 * 25e9)
    with pytest.raises(ConfigError, match="valid"):
        nccl.profile_topology("dgx9")


# ---------------------------------------------------------------------- scenario settings
def _scenario(**exchange: object) -> dict:
    return {"workers": 16, "model": {"name": "mlp", "target_device": "A100"},
            "cluster": {"topology": "servers", "gpus_per_server": 8, "intra_bandwidth_Gbps": 2400,
                        "nic_bandwidth_Gbps": 200, "nics_per_server": 4},
            "codecs": ["fp32"], "exchange": {"summable": "nccl_allreduce", **exchange}}


def test_scenario_algorithm_and_protocol_reach_the_collective_and_sweep() -> None:
    from gradwire.iteration import ExchangeChoice
    from gradwire.scenarios.loader import expand, load_scenario

    sc = load_scenario(_scenario(algorithm="tree", protocol="simple",
                                 summable_options={"algorithm": "tree", "channels": 2}))
    name, opts, _ = ExchangeChoice.of(sc).collective_for(True)
    assert (name, opts) == ("nccl_allreduce", {"algorithm": "tree", "channels": 2, "protocol": "simple",
                                               "gpu": "A100"})
    assert "LL128 enabled (NCCL's default on A100, compute capability 8.0)" in ExchangeChoice.of(sc).describe()[0]
    pts = expand(load_scenario({**_scenario(), "sweep": {"exchange.algorithm": ["ring", "tree"],
                                                         "exchange.protocol": ["auto", "ll"]}}))
    got = {(ExchangeChoice.of(p.scenario).collective_for(True)[1].get("algorithm"),
            ExchangeChoice.of(p.scenario).collective_for(True)[1].get("protocol")) for p in pts}
    assert got == {("ring", None), ("tree", None), ("ring", "ll"), ("tree", "ll")}


@pytest.mark.parametrize(("exchange", "field", "words"), [
    ({"algorithm": "ring", "summable_options": {"algorithm": "tree"}}, "exchange.algorithm", "conflicts"),
    ({"protocol": "ll", "summable_options": {"protocol": "simple"}}, "exchange.protocol", "conflicts"),
    ({"summable": "ring_allreduce", "protocol": "ll"}, "exchange.protocol", "nccl_allreduce"),
    ({"summable": "hierarchical_allreduce", "algorithm": "tree"}, "exchange.algorithm", "takes no algorithm"),
    ({"algorithm": "halving"}, "exchange.algorithm", "ring"),
])
def test_scenario_settings_that_conflict_or_do_not_apply_name_the_field(exchange: dict, field: str,
                                                                       words: str) -> None:
    from gradwire.errors import ScenarioError
    from gradwire.scenarios.loader import load_scenario

    with pytest.raises(ScenarioError) as err:
        load_scenario(_scenario(**exchange))
    msgs = [p.message for p in err.value.problems if p.path == field]
    assert msgs and words in msgs[0], str(err.value)


def test_ll128_default_follows_the_gpu_architecture() -> None:
    """NCCL enables LL128 by default only on compute capability 7.0/8.0/9.0; forcing the
    protocol enables it anywhere (NCCL_PROTO=LL128)."""
    from gradwire.models.devices import list_devices

    assert set(list_devices()) <= set(nccl.COMPUTE_CAPABILITY)  # every target GPU is gated
    assert {d: nccl.ll128_default(d) for d in list_devices()} == {
        d: nccl.COMPUTE_CAPABILITY[d] in (70, 80, 90) for d in list_devices()}
    assert not nccl.ll128_default("P100") and nccl.ll128_default("V100") and nccl.ll128_default("H100")
    topo = servers(1, 8, 2.4e11, 2.5e10)
    ranks = np.arange(8)
    from gradwire.simulator.collectives.nccl_allreduce import plan

    picks = {gpu: {plan(topo, ranks, m, 1.0, algorithm="auto", protocol="auto", channels=0, ll128=None,
                        gpu=gpu)[2] for m in np.geomspace(1e3, 1e10, 40)} for gpu in ("A100", "P100")}
    assert "ll128" in picks["A100"] and "ll128" not in picks["P100"]
    assert picks["P100"] == {"ll", "simple"}
    forced = run_collective(topo, "nccl_allreduce", 1e7, protocol="ll128", gpu="P100").time_s
    assert forced == pytest.approx(run_collective(topo, "nccl_allreduce", 1e7, protocol="ll128").time_s, rel=REL)
    assert check_options("nccl_allreduce", {"gpu": "X9"}, "f")[0].startswith("f.gpu: no compute capability")


# ---------------------------------------------------------------------- LL's cap, system latency
def test_ll_cap_follows_nccl_table_and_bounds_the_time() -> None:
    """NCCL's llMaxBws: by GPU generation on one node, by CPU vendor across 2 / more nodes;
    LL's time is at least latency + M / cap (ring: bus x p/(2(p-1)), tree: bus / 2)."""
    assert nccl.ll_max_bus_Bps(1, "A100") == 87.7e9 and nccl.ll_max_bus_Bps(1, "V100") == 39.0e9
    assert nccl.ll_max_bus_Bps(2, "H100", "intel") == 39.0e9 and nccl.ll_max_bus_Bps(5, None, "amd") == 19.0e9
    topo = servers(2, 8, 8e11, 1e11, nics_per_server=8)
    m = 6e7
    for alg, cap in (("ring", 39e9 * 16 / 30), ("tree", 39e9 / 2)):
        opts = {"algorithm": alg, "protocol": "ll", "gpu": "H100", "cpu": "intel"}
        t = run_collective(topo, "nccl_allreduce", m, **opts).time_s
        lay = nccl.layout_of(topo, np.arange(16), gpu="H100", cpu="intel")
        assert t == pytest.approx(nccl.latency_s(alg, "ll", lay) + m / cap, rel=REL)
        assert nccl.algorithm_Bps(alg, "ll", lay) == pytest.approx(cap)
        # where the closed form is exact (a star), it applies the same bound
        st_ = star(4, 1e12, 1e-6)
        opts["cpu"] = "amd"
        t = run_collective(st_, "nccl_allreduce", m, **opts).time_s
        assert t == pytest.approx(analytic.closed_form(st_, "nccl_allreduce", m, **opts), rel=REL)
        assert t == pytest.approx(nccl.latency_s(alg, "ll", nccl.layout_of(st_, np.arange(4))) + m / (
            19e9 * (4 / 6 if alg == "ring" else 0.5)), rel=REL)


def test_system_latency_is_paid_once_per_protocol() -> None:
    topo = servers(2, 4, 2e11, 2.5e10, nics_per_server=2)
    for proto in ("ll128", "simple"):
        plain = run_collective(topo, "nccl_allreduce", 3e7, algorithm="tree", protocol=proto).time_s
        more = run_collective(topo, "nccl_allreduce", 3e7, algorithm="tree", protocol=proto,
                              latency_us={proto: 250.0, "ll": 7.0}).time_s
        assert more - plain == pytest.approx(250e-6, rel=1e-6)
    assert check_options("nccl_allreduce", {"latency_us": {"fast": 1}, "cpu": "arm"}, "f") == [
        "f.cpu: the host CPU's vendor sets LL's cap across nodes: intel, amd; got 'arm'",
        "f.latency_us: a mapping of protocol (ll, ll128, simple) to microseconds >= 0, got {'fast': 1}"]


@pytest.mark.parametrize("name", ["a100_8x_node", "h100_a3mega_2x8"])
def test_profile_ll_latency_is_its_anchor_row_minus_the_model(name: str) -> None:
    """A profile's LL latency is the measured time of the sweep's smallest message (a row
    outside the judged csv) less the model's fastest LL time there."""
    pr = nccl.load_profiles()[name]
    topo = nccl.profile_topology(name)
    model = min(run_collective(topo, "nccl_allreduce", float(pr["ll_anchor"]["bytes"]), algorithm=a,
                               protocol="ll", gpu=pr["gpu"], cpu=pr["cpu"]).time_s for a in nccl.ALGORITHMS)
    assert pr["latency_us"]["ll"] == pytest.approx(pr["ll_anchor"]["time_us"] - model * 1e6, abs=0.05)
