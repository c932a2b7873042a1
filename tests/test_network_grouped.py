"""The grouped flow engine (flow classes) equals the one-row-per-flow engine exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwire.simulator.collectives import COLLECTIVES
from gradwire.simulator.network import Network
from gradwire.simulator.network_ungrouped import UngroupedNetwork
from gradwire.simulator.timeline import BucketCost, IterationSpec, simulate_iteration
from gradwire.simulator.topology import Topology, fat_tree, servers

REL = 1e-9


def _topology(kind: str, p: int, over: float, slow: float) -> Topology:
    if kind == "fat_tree":
        k = 4 if p <= 16 else 6
        topo = fat_tree(k, 1e9, 1e-6, oversubscription=over, num_gpus=p)
    else:
        gps = 4 if p % 4 == 0 else 2 if p % 2 == 0 else 1
        topo = servers(p // gps, gps, 2e10, 1e9, fabric="fat_tree", oversubscription=over,
                       nics_per_server=2 if gps > 1 else 1)
    if slow != 1.0:
        # a straggling link: the first GPU's uplink runs ``slow`` times slower
        g = topo.graph.copy()
        u = topo.ranks[0]
        v = next(iter(g.successors(u)))
        g.edges[u, v]["bandwidth_Bps"] = g.edges[u, v]["bandwidth_Bps"] / slow
        for _, _, d in g.edges(data=True):
            d.pop("link_id", None)
        topo = Topology(g, list(topo.ranks), topo.name, topo.servers)
    return topo


def _run(net_cls: Any, topo: Topology, jobs: list[tuple[str, float, list[float], dict[str, Any]]]
         ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    env = simpy.Environment()
    net = net_cls(env, topo, per_message_overhead_s=2e-6)
    p = topo.num_ranks

    def job(name: str, start: float, sizes: list[float], opts: dict[str, Any]) -> Any:
        yield env.timeout(start)
        yield env.process(COLLECTIVES.get(name)(net, list(range(p)), sizes, **opts))

    for name, start, sizes, opts in jobs:
        env.process(job(name, start, sizes, opts))
    env.run()
    rec = net.records
    order = np.lexsort((rec.end_s, rec.dst, rec.src, rec.start_s))
    return float(env.now), rec.end_s[order], net.link_busy_s, net.link_bytes


collective_st = st.sampled_from([
    ("ring_allreduce", {}), ("ring_allgather", {}), ("tree_allreduce", {"double": True}),
    ("halving_doubling_allreduce", {}), ("alltoall", {}), ("nccl_allreduce", {"algorithm": "tree"}),
    ("nccl_allreduce", {"algorithm": "ring", "channels": 3}), ("parameter_server", {"num_servers": 2}),
])


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["fat_tree", "servers"]), p=st.integers(2, 16),
       over=st.sampled_from([1.0, 2.0, 4.0]), slow=st.sampled_from([1.0, 3.0]),
       jobs=st.lists(st.tuples(collective_st, st.floats(0.0, 2e-3), st.booleans()), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_grouped_engine_equals_ungrouped(kind: str, p: int, over: float, slow: float,
                                         jobs: list[tuple[tuple[str, dict[str, Any]], float, bool]],
                                         seed: int) -> None:
    """Concurrent collectives (contention between them), oversubscribed fabrics, a
    straggling link and mixed payload sizes: every completion time, the run's end, and
    per-link busy time and bytes agree to 1e-9 relative."""
    topo = _topology(kind, p, over, slow)
    rng = np.random.default_rng(seed)
    spec = []
    for (name, opts), start, mixed in jobs:
        sizes = (rng.uniform(1e4, 2e6, p) if mixed else np.full(p, rng.uniform(1e4, 2e6))).tolist()
        spec.append((name, start, sizes, opts))
    t_g, end_g, busy_g, bytes_g = _run(Network, topo, spec)
    t_u, end_u, busy_u, bytes_u = _run(UngroupedNetwork, topo, spec)
    assert t_g == pytest.approx(t_u, rel=REL)
    np.testing.assert_allclose(end_g, end_u, rtol=REL)
    np.testing.assert_allclose(busy_g, busy_u, rtol=REL, atol=1e-15)
    np.testing.assert_allclose(bytes_g, bytes_u, rtol=REL)


@settings(max_examples=10, deadline=None)
@given(collective=st.sampled_from(["ring_allreduce", "hierarchical_allreduce", "nccl_allreduce",
                                   "tree_allreduce"]),
       straggler=st.floats(1.0, 3.0), over=st.sampled_from([1.0, 3.0]), seed=st.integers(0, 99))
def test_grouped_iteration_equals_ungrouped(collective: str, straggler: float, over: float, seed: int) -> None:
    """A whole iteration (buckets overlapping backward, a compute straggler, jitter)."""
    topo = servers(4, 4, 2e10, 1e9, fabric="fat_tree", oversubscription=over)
    buckets = tuple(BucketCost(250_000, 0.01 * (i + 1), (1e6 * (i + 1),), 1e-4, 1e-4) for i in range(3))
    spec = IterationSpec(0.01, 0.03, 0.002, buckets, collective)
    kw: dict[str, Any] = {"stragglers": {3: straggler}, "jitter": 0.05, "seed": seed}
    g = simulate_iteration(spec, topo, network=Network, **kw)
    u = simulate_iteration(spec, topo, network=UngroupedNetwork, **kw)
    assert g.iteration_s == pytest.approx(u.iteration_s, rel=REL)
    assert g.exposed_comm_s == pytest.approx(u.exposed_comm_s, rel=REL, abs=1e-15)
    assert g.n_transfers == u.n_transfers
    assert g.bytes_per_rank == pytest.approx(u.bytes_per_rank, rel=REL)


def test_a_symmetric_ring_step_is_a_few_classes() -> None:
    """On servers of equal GPUs a ring step has two kinds of flows (inside a server, across
    servers): the grouped engine keeps two rows, whatever p."""
    for n_srv in (4, 32):
        topo = servers(n_srv, 8, 2e11, 1.25e10)
        env = simpy.Environment()
        net = Network(env, topo)
        p = topo.num_ranks
        r = np.arange(p)
        net.transfers(r, np.roll(r, -1), 1e6)
        env.run(until=1e-9)
        grp = next(iter(net._active.values()))
        assert grp.part.n_cls == 2
        env.run()


@settings(max_examples=30, deadline=None)
@given(arrive=st.floats(0.0, 1.0), size=st.floats(1e3, 5e6), n_srv=st.integers(2, 6),
       gap=st.sampled_from([0.0, 3e-6]), over=st.sampled_from([1.0, 2.0]))
def test_a_coasting_repeat_lands_exactly_where_something_arrives(arrive: float, size: float, n_srv: int,
                                                                 gap: float, over: float) -> None:
    """A repeated ring step runs alone (so it coasts); a transfer crossing its busiest
    link arrives at a random instant of it -- mid-drain, in a latency tail or in a gap.
    Both engines give the same completion times, link busy time and bytes."""
    topo = servers(n_srv, 4, 2e10, 1e9, fabric="fat_tree", oversubscription=over)
    p = topo.num_ranks
    r = np.arange(p)
    steps = 2 * (p - 1)

    def run(cls: Any) -> tuple[float, float, np.ndarray, np.ndarray]:
        env = simpy.Environment()
        net = cls(env, topo, per_message_overhead_s=1e-6)
        ring = net.transfers(r, np.roll(r, -1), size, "ring", repeat=steps, gap_s=gap)
        # the ring alone would take about steps x (size/1e9 + latencies)
        at = arrive * steps * (size / 1e9 + 3e-5)
        out: dict[str, float] = {}

        def late() -> Any:
            yield env.timeout(at)
            out["late"] = yield net.transfers([0], [p - 1], 4 * size, "late")

        env.process(late())
        env.run()
        return float(ring.value), out["late"], net.link_busy_s, net.link_bytes

    g, u = run(Network), run(UngroupedNetwork)
    assert g[0] == pytest.approx(u[0], rel=REL)
    assert g[1] == pytest.approx(u[1], rel=REL)
    np.testing.assert_allclose(g[2], u[2], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g[3], u[3], rtol=REL)


def test_a_repeat_alone_is_simulated_once() -> None:
    """Coasting: 2(p-1) ring steps on a quiet network cost a couple of solved steps."""
    topo = servers(64, 8, 2e11, 1.25e10)
    env = simpy.Environment()
    net = Network(env, topo)
    r = np.arange(topo.num_ranks)
    done = net.transfers(r, np.roll(r, -1), 1e5, "ring", repeat=2 * (len(r) - 1))
    env.run()
    assert net.n_transfers == 2 * (len(r) - 1) * len(r)
    assert env.now == pytest.approx(float(done.value))
    assert len(net._groups) <= 4  # one simulated step, the coasted rest as one record
    rec = net.records
    assert len(rec) == net.n_transfers
    assert rec.end_s.max() == pytest.approx(float(done.value), rel=REL)


@settings(max_examples=60, deadline=None)
@given(n_links=st.integers(1, 12), routes=st.lists(st.lists(st.integers(0, 11), min_size=0, max_size=4),
                                                   min_size=1, max_size=30),
       caps=st.lists(st.sampled_from([1.0, 2.0, 3.0, 7.5, 1e9, 2.5e10]), min_size=12, max_size=12))
def test_compiled_max_min_rates_are_the_reference_floats(n_links: int, routes: list[list[int]],
                                                         caps: list[float]) -> None:
    """The compiled progressive filling returns exactly the reference's floats."""
    from gradwire.simulator import maxmin

    routes = [[x % n_links for x in r] for r in routes]
    flow_of = np.repeat(np.arange(len(routes)), [len(r) for r in routes]).astype(np.int64)
    link_of = np.array([x for r in routes for x in r], dtype=np.int64)
    cap = np.array(caps[:n_links])
    want = maxmin.max_min_rates_reference(flow_of, link_of, len(routes), cap)
    got = np.full(len(routes), np.inf)
    if len(link_of):
        maxmin._rates(flow_of, link_of, cap, got)
    np.testing.assert_array_equal(got, want)


def test_tree_steps_cut_from_one_pattern_equal_looked_up_routes() -> None:
    """A step's routes cut from the tree edges' routes are the routes looked up."""
    from gradwire.simulator import nccl

    topo = servers(6, 4, 2e10, 1e9, fabric="fat_tree", oversubscription=2.0)
    net = Network(simpy.Environment(), topo)
    grid = np.arange(24).reshape(6, 4)
    edges, steps = nccl.tree_plan_of(grid, 2, 5)
    for step in steps:
        net.cut_pattern(edges.src, edges.dst, step.idx)
        cut = net._patterns[(step.src.tobytes(), step.dst.tobytes())]
        fresh = Network(simpy.Environment(), topo)._pattern(step.src.copy(), step.dst.copy(), "")
        np.testing.assert_array_equal(cut.flow_of, fresh.flow_of)
        np.testing.assert_array_equal(cut.link_of, fresh.link_of)
        np.testing.assert_array_equal(cut.latency_s, fresh.latency_s)


def test_a_batch_that_ran_alone_is_replayed_and_lands_where_something_arrives() -> None:
    """A uniform batch issued again on a quiet network is not simulated again (it coasts
    on how it ran before) and equals the reference engine, also when another batch
    arrives in the middle of it."""
    topo = servers(4, 4, 2e10, 1e9, fabric="fat_tree", oversubscription=2.0)
    r = np.arange(16)
    for arrive in (None, 3e-3, 1.2e-2, 1.9e-2):  # one batch takes 8.0 ms: before, in and late in a replay
        out = []
        for cls in (Network, UngroupedNetwork):
            env = simpy.Environment()
            net = cls(env, topo, per_message_overhead_s=1e-6)

            def proc(net: Any = net, env: simpy.Environment = env) -> Any:
                for _ in range(3):
                    yield net.transfers(r, np.roll(r, -5), 1e6, "a")
                    yield env.timeout(1e-5)

            def other(net: Any = net, env: simpy.Environment = env, at: float = arrive or 0.0) -> Any:
                yield env.timeout(at)
                yield net.transfers(r, np.roll(r, -1), 4e5, "b")

            env.process(proc())
            if arrive is not None:
                env.process(other())
            env.run()
            rec = net.records
            out.append((env.now, np.sort(rec.end_s), net.link_busy_s))
        assert out[0][0] == pytest.approx(out[1][0], rel=REL)
        np.testing.assert_allclose(out[0][1], out[1][1], rtol=REL)
        np.testing.assert_allclose(out[0][2], out[1][2], rtol=REL, atol=1e-15)
    env = simpy.Environment()
    net = Network(env, topo)

    def again() -> Any:
        for _ in range(5):
            yield net.transfers(r, np.roll(r, -5), 1e6)

    env.process(again())
    env.run()
    assert net._n_coasts == 4  # the first ran, the other four replayed


@settings(max_examples=80, deadline=None)
@given(n_links=st.integers(1, 12), routes=st.lists(st.lists(st.integers(0, 11), min_size=1, max_size=4),
                                                   min_size=2, max_size=30),
       caps=st.lists(st.sampled_from([1.0, 2.0, 3.0, 7.5, 1e9, 2.5e10]), min_size=12, max_size=12),
       cut=st.floats(0.0, 1.0))
def test_flows_slower_than_those_that_finish_keep_their_rates(n_links: int, routes: list[list[int]],
                                                              caps: list[float], cut: float) -> None:
    """What lets the engine skip a solve when flows finish: take away every flow of rate s
    or more, and each remaining flow (all slower than s) keeps exactly its rate."""
    from gradwire.simulator import maxmin

    routes = [[x % n_links for x in r] for r in routes]
    cap = np.array(caps[:n_links])

    def solve(rs: list[list[int]]) -> np.ndarray:
        flow_of = np.repeat(np.arange(len(rs)), [len(r) for r in rs]).astype(np.int64)
        link_of = np.array([x for r in rs for x in r], dtype=np.int64)
        return maxmin.max_min_rates_reference(flow_of, link_of, len(rs), cap)

    rate = solve(routes)
    levels = np.unique(rate)
    s = levels[min(int(cut * len(levels)), len(levels) - 1)]
    keep = np.flatnonzero(rate < s)
    if len(keep) == 0:
        return
    np.testing.assert_array_equal(solve([routes[i] for i in keep]), rate[keep])


@pytest.mark.parametrize("over", [1.0, 2.0])
def test_tree_pipeline_solves_only_when_rates_can_change(over: float) -> None:
    """NCCL's pipelined tree: flows of a step finish at several instants, fastest first; the
    slower ones keep their rates, so the engine solves once per distinct step (not once
    per instant) and still equals the reference engine."""
    topo = servers(16, 8, 3e11, 12.5e9, fabric="fat_tree", oversubscription=over)
    out = []
    for cls in (Network, UngroupedNetwork):
        env = simpy.Environment()
        net = cls(env, topo, per_message_overhead_s=1e-6)
        env.process(COLLECTIVES.get("nccl_allreduce")(net, list(range(topo.num_ranks)), [8e6] * topo.num_ranks,
                                                      algorithm="tree", protocol="simple"))
        env.run()
        rec = net.records
        order = np.lexsort((rec.end_s, rec.dst, rec.src, rec.start_s))
        out.append((env.now, rec.end_s[order], net.link_busy_s, net))
    (t_g, end_g, busy_g, g), (t_u, end_u, busy_u, _) = out
    assert t_g == pytest.approx(t_u, rel=REL)
    np.testing.assert_allclose(end_g, end_u, rtol=REL)
    np.testing.assert_allclose(busy_g, busy_u, rtol=REL, atol=1e-15)
    wakes = len({float(e) for e in end_g})
    assert g.n_solves * 4 < wakes


def test_bytes_left_a_hair_below_zero_drain_at_once() -> None:
    """Unpipelined tree on 256 GPUs of a fat-tree: the clock's rounding leaves a flow
    -1e-7 bytes to send, which both engines drain at once (once a negative delay)."""
    topo = fat_tree(16, 12.5e9, 1e-6, num_gpus=256)
    out = []
    for cls in (Network, UngroupedNetwork):
        env = simpy.Environment()
        net = cls(env, topo)
        env.process(COLLECTIVES.get("tree_allreduce")(net, list(range(256)), [100e6] * 256))
        env.run()
        rec = net.records
        out.append((env.now, np.sort(rec.end_s)))
    assert out[0][0] == pytest.approx(out[1][0], rel=REL)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=REL)
