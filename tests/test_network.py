"""The flow-level engine: exact timelines of tiny runs, max-min sharing, records, errors."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwire.errors import ConfigError, TopologyError
from gradwire.simulator.network import Network, max_min_rates
from gradwire.simulator.topology import make_topology

B = 1e9
LAT = 2e-6


def star(p: int = 4, latency_s: float = LAT):
    return make_topology("star", p, bandwidth_Bps=B, latency_s=latency_s)


def run(net: Network, proc) -> float:
    env = net.env
    p = env.process(proc)
    env.run(until=p)
    return float(env.now)


def test_single_transfer_is_alpha_plus_bytes_over_bandwidth() -> None:
    env = simpy.Environment()
    net = Network(env, star(), per_message_overhead_s=5e-6)

    def proc():
        t = yield net.transfer(0, 1, 1e6, "x")
        assert t == pytest.approx(1e6 / B + 2 * LAT + 5e-6, rel=1e-12)

    end = run(net, proc())
    assert end == pytest.approx(1e-3 + 4e-6 + 5e-6, rel=1e-12)
    (rec,) = net.trace()
    assert rec[:3] == (0, 1, 1e6) and rec[3] == 0.0 and rec[5] == "x"
    assert rec[4] == pytest.approx(end, rel=1e-12)


def test_two_flows_on_one_link_get_half_each() -> None:
    env = simpy.Environment()
    net = Network(env, star(3, latency_s=0.0))
    ev = net.transfers([0, 1], [2, 2], 1e6)
    env.run(until=ev)
    r = net.records
    # both share gpu2's downlink: each at B/2, both done at 2M/B
    np.testing.assert_allclose(r.end_s, [2e-3, 2e-3], rtol=1e-12)
    # with disjoint destinations they do not interfere
    env2 = simpy.Environment()
    net2 = Network(env2, star(4, latency_s=0.0))
    env2.run(until=net2.transfers([0, 1], [2, 3], 1e6))
    np.testing.assert_allclose(net2.records.end_s, [1e-3, 1e-3], rtol=1e-12)


def test_short_flow_leaves_and_long_flow_speeds_up() -> None:
    env = simpy.Environment()
    net = Network(env, star(3, latency_s=0.0))
    env.run(until=net.transfers([0, 1], [2, 2], [1e6, 3e6]))
    # shared at B/2 until the short one drains at 2e-3; the long one then has 2 MB left at B
    np.testing.assert_allclose(net.records.end_s, [2e-3, 4e-3], rtol=1e-12)


def test_late_flow_joins_and_rates_are_recomputed() -> None:
    env = simpy.Environment()
    net = Network(env, star(3, latency_s=0.0))

    def late():
        yield env.timeout(0.5e-3)
        yield net.transfer(1, 2, 1e6)

    env.process(late())
    first = net.transfer(0, 2, 1e6)
    env.run()
    r = net.records
    # first: 0.5 MB alone, then 0.5 MB at B/2 -> 1.5e-3; second: 0.5 MB at B/2, 0.5 MB alone -> 2e-3
    assert first.value == pytest.approx(1.5e-3, rel=1e-12)
    np.testing.assert_allclose(r.end_s, [1.5e-3, 2e-3], rtol=1e-12)
    np.testing.assert_allclose(r.start_s, [0.0, 0.5e-3])


def test_efficiency_scales_payload_rate() -> None:
    env = simpy.Environment()
    eff = 1448 / 1538
    net = Network(env, star(latency_s=0.0), efficiency=eff)
    env.run(until=net.transfer(0, 1, 1448e3))
    assert env.now == pytest.approx(1538e3 / B, rel=1e-12)


def test_zero_bytes_and_self_transfer_cost_only_alpha() -> None:
    env = simpy.Environment()
    net = Network(env, star(), per_message_overhead_s=1e-6)
    env.run(until=net.transfer(0, 1, 0.0))
    assert env.now == pytest.approx(2 * LAT + 1e-6, rel=1e-12)
    t0 = env.now
    env.run(until=net.transfer(2, 2, 5e6))
    assert env.now - t0 == pytest.approx(1e-6, rel=1e-9)


def test_max_min_rates_progressive_filling_oracle() -> None:
    # link 0 (cap 1): flows A, B; link 1 (cap 2): flows B, C, D.
    # link 0 share 1/2 < link 1 share 2/3: A = B = 1/2; then C = D = (2 - 1/2) / 2.
    flow_of = np.array([0, 1, 1, 2, 3])
    link_of = np.array([0, 0, 1, 1, 1])
    rates = max_min_rates(flow_of, link_of, 4, np.array([1.0, 2.0]))
    np.testing.assert_allclose(rates, [0.5, 0.5, 0.75, 0.75])


def _reference_max_min(routes: list[list[int]], cap: list[float]) -> list[float]:
    """Textbook progressive filling, one flow at a time (Bertsekas and Gallager 6.5.2)."""
    rate = [0.0] * len(routes)
    frozen = [not r for r in routes]
    left = list(cap)
    while not all(frozen):
        best = min(
            left[link] / sum(1 for f, r in enumerate(routes) if not frozen[f] and link in r)
            for link in range(len(cap))
            if any(not frozen[f] and link in r for f, r in enumerate(routes))
        )
        for f in range(len(routes)):
            if not frozen[f]:
                rate[f] += best
        for link in range(len(cap)):
            n = sum(1 for f, r in enumerate(routes) if not frozen[f] and link in r)
            left[link] -= best * n
        for f, r in enumerate(routes):
            if not frozen[f] and any(left[link] <= 1e-9 * cap[link] for link in r):
                frozen[f] = True
    return [x if r else float("inf") for x, r in zip(rate, routes, strict=True)]


@settings(max_examples=60, deadline=None)
@given(
    cap=st.lists(st.floats(0.1, 10.0), min_size=1, max_size=6),
    routes=st.lists(st.lists(st.integers(0, 5), max_size=4, unique=True), min_size=1, max_size=8),
)
def test_max_min_rates_matches_textbook_progressive_filling(cap: list[float], routes: list[list[int]]) -> None:
    routes = [[link % len(cap) for link in r] for r in routes]
    routes = [sorted(set(r)) for r in routes]
    flow_of = np.array([f for f, r in enumerate(routes) for _ in r], dtype=np.int64)
    link_of = np.array([link for r in routes for link in r], dtype=np.int64)
    got = max_min_rates(flow_of, link_of, len(routes), np.array(cap))
    np.testing.assert_allclose(got, _reference_max_min(routes, cap), rtol=1e-9)


def test_max_min_rates_mixes_lone_and_shared_flows() -> None:
    # flow 0 alone on a thin link; flows 1 and 2 share a thick one
    rates = max_min_rates(np.array([0, 1, 2]), np.array([0, 1, 1]), 3, np.array([0.1, 1.0]))
    np.testing.assert_allclose(rates, [0.1, 0.5, 0.5])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(1e3, 1e7), min_size=1, max_size=12))
def test_incast_is_work_conserving(sizes: list[float]) -> None:
    # All flows into one GPU share its downlink: max-min keeps it saturated, so the last
    # flow ends at total/B (+ latency); flows end in order of size.
    p = len(sizes) + 1
    env = simpy.Environment()
    net = Network(env, star(p))
    env.run(until=net.transfers(list(range(1, p)), [0] * (p - 1), sizes))
    r = net.records
    assert env.now == pytest.approx(sum(sizes) / B + 2 * LAT, rel=1e-9)
    order = np.argsort(sizes, kind="stable")
    assert np.all(np.diff(r.end_s[order]) >= -1e-15)
    usage = {(u.src, u.dst): u for u in net.link_usage(env.now)}
    down = usage[("sw", "gpu0")]
    assert down.bytes == pytest.approx(sum(sizes))
    assert down.busy_s == pytest.approx(sum(sizes) / B, rel=1e-9)
    assert down.utilization == pytest.approx(down.busy_s / env.now)


@settings(max_examples=25, deadline=None)
@given(
    flows=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.floats(1e3, 1e6), st.floats(0, 1e-3)),
               min_size=1, max_size=10)
)
def test_random_flows_respect_lower_bounds_and_conserve_bytes(flows) -> None:
    topo = star(6)
    env = simpy.Environment()
    net = Network(env, topo)

    def start(a: int, b: int, n: float, t: float):
        yield env.timeout(t)
        yield net.transfer(a, b, n)

    for f in flows:
        env.process(start(*f))
    env.run()
    r = net.records
    assert len(r) == len(flows) == net.n_transfers
    for a, b, n, t in flows:
        i = next(k for k in range(len(r)) if (r.src[k], r.dst[k], r.nbytes[k], r.start_s[k]) == (a, b, n, t))
        floor = 0.0 if a == b else n / B + 2 * LAT
        assert r.end_s[i] - r.start_s[i] >= floor * (1 - 1e-9)
    hops = sum(len(topo.route(a, b)) * n for a, b, n, _ in flows)
    assert net.link_bytes.sum() == pytest.approx(hops)


def test_same_inputs_give_identical_traces() -> None:
    def once():
        topo = make_topology("fat_tree", 16, k=4, bandwidth_Bps=B, oversubscription=2.0)
        env = simpy.Environment()
        net = Network(env, topo, per_message_overhead_s=1e-6)
        rng = np.random.default_rng(7)
        src = rng.integers(0, 16, 60)
        dst = rng.integers(0, 16, 60)
        size = rng.uniform(1e4, 1e6, 60)
        env.run(until=net.transfers(src, dst, size, "a"))
        env.run(until=net.transfers(dst, src, size[::-1], "b"))
        return net.trace(), net.link_busy_s

    (t1, b1), (t2, b2) = once(), once()
    assert t1 == t2
    np.testing.assert_array_equal(b1, b2)


def test_concurrent_batches_share_links_fairly() -> None:
    # two ring steps issued by two processes at once over the same star: no link is shared
    # (each GPU sends once and receives once), so both finish as if alone
    env = simpy.Environment()
    net = Network(env, star(4, latency_s=0.0))
    a = net.transfers([0, 1], [1, 0], 1e6)
    b = net.transfers([2, 3], [3, 2], 1e6)
    env.run(until=simpy.AllOf(env, [a, b]))
    assert env.now == pytest.approx(1e-3, rel=1e-12)
    # the same destination twice: shared
    c = net.transfers([0], [3], 1e6)
    d = net.transfers([1], [3], 1e6)
    t0 = env.now
    env.run(until=simpy.AllOf(env, [c, d]))
    assert env.now - t0 == pytest.approx(2e-3, rel=1e-12)


def test_errors_name_the_parameter() -> None:
    env = simpy.Environment()
    with pytest.raises(ConfigError, match="efficiency"):
        Network(env, star(), efficiency=1.5)
    with pytest.raises(ConfigError, match="per_message_overhead_s"):
        Network(env, star(), per_message_overhead_s=-1.0)
    net = Network(env, star())
    with pytest.raises(TopologyError, match=r"ranks must be in 0\.\.3"):
        net.transfer(0, 9, 1.0)
    with pytest.raises(ConfigError, match="nbytes"):
        net.transfer(0, 1, -5.0)
    with pytest.raises(ConfigError, match="equal length"):
        net.transfers([0, 1], [1], 1.0)
    with pytest.raises(ConfigError, match="horizon_s"):
        net.link_usage(0.0)


def test_busy_time_excludes_idle_gaps_and_latency() -> None:
    env = simpy.Environment()
    net = Network(env, star(3, latency_s=1e-3))

    def proc():
        yield net.transfer(0, 1, 1e6)  # drains 0..1 ms, lands at 3 ms (two 1 ms hops)
        yield env.timeout(2e-3)
        yield net.transfer(0, 1, 2e6)  # issued at 5 ms, drains 5..7 ms

    env.process(proc())
    env.run()
    assert env.now == pytest.approx(9e-3, rel=1e-12)
    up = {(u.src, u.dst): u for u in net.link_usage(env.now)}[("gpu0", "sw")]
    assert up.busy_s == pytest.approx(3e-3, rel=1e-12)
    assert up.bytes == 3e6
    assert up.utilization == pytest.approx(3e-3 / 9e-3)


def test_transfer_issued_when_another_completes_starts_at_that_instant() -> None:
    env = simpy.Environment()
    net = Network(env, star(3, latency_s=0.0))
    order = []

    def chain():
        t = yield net.transfer(0, 2, 1e6, "first")
        order.append(t)
        t = yield net.transfer(1, 2, 1e6, "second")
        order.append(t)

    env.process(chain())
    env.run()
    assert order == pytest.approx([1e-3, 2e-3], rel=1e-12)
    r = net.records
    assert r.start_s.tolist() == pytest.approx([0.0, 1e-3]) and r.tag.tolist() == ["first", "second"]
