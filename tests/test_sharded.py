"""Sharded data parallelism: the FSDP timeline against closed forms, bytes per rank against
(p-1)/p of the model per all-gather and reduce-scatter, the ZeRO paper's 2Ψ/3Ψ and its
memory figures, and the quantized all-to-all reduce-scatter (ZeRO++'s qgZ) moving the bytes
and quantizing each element the number of times its declaration says."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import simpy
import torch

from gradwire.codecs import make_codec
from gradwire.errors import ScenarioError
from gradwire.pipeline import evaluate_point, expand, prepare, simulate_codec
from gradwire.scenarios.loader import load_scenario
from gradwire.sharding import memory, scenario_memory
from gradwire.simulator.collectives.hierarchical_alltoall import (
    bytes_per_rank,
    hierarchical_alltoall,
    quantizations,
    rank_grid,
)
from gradwire.simulator.network import Network
from gradwire.simulator.sharded import (
    Gather,
    Reduce,
    ShardedSpec,
    ShardUnit,
    element_quantizations,
    simulate_sharded,
    wire_bytes,
)
from gradwire.simulator.topology import make_topology

B = 1e9  # bytes/s per link


def _star(p: int):
    return make_topology("star", num_ranks=p, bandwidth_Bps=B, latency_s=0.0)


def _spec(mode: str, n: int, m: float, rs: float, fwd: float, bwd: float, *, prefetch: bool = True,
          keep_root: bool = False, opt: float = 0.0) -> ShardedSpec:
    units = tuple(ShardUnit("(root)" if k == 0 and keep_root else f"layers.{k}", 1000, fwd, bwd,
                            Gather(m), Reduce(rs), reshard=not (k == 0 and keep_root)) for k in range(n))
    return ShardedSpec(mode, units, opt, prefetch=prefetch)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_prefetch_hides_compute_but_one_unit_per_pass(p: int) -> None:
    # communication-bound (an all-gather takes a > compute c per unit), no gradients: with
    # prefetch the all-gathers run back to back, so T = 2 N a + 2 c (the last unit of each
    # pass computes after its gather); without, every gather waits for the compute before it
    n, m, c, opt = 5, 4e6, 1e-3, 2e-4
    a = (p - 1) / p * m / B  # ring all-gather of m bytes on dedicated links
    assert c < a
    topo = _star(p)
    with_pf = simulate_sharded(_spec("zero3", n, m, 0.0, c, c, opt=opt), topo)
    without = simulate_sharded(_spec("zero3", n, m, 0.0, c, c, prefetch=False, opt=opt), topo)
    assert with_pf.iteration_s == pytest.approx(2 * n * a + 2 * c + opt, rel=1e-9)
    assert without.iteration_s == pytest.approx(2 * n * (a + c) + opt, rel=1e-9)
    # FSDP keeps the root unit (first in forward) gathered for backward: one gather fewer
    kept = simulate_sharded(_spec("fsdp", n, m, 0.0, c, c, prefetch=False, keep_root=True), topo)
    assert kept.iteration_s == pytest.approx((2 * n - 1) * a + 2 * n * c, rel=1e-9)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_compute_bound_unit_timeline(p: int) -> None:
    # per unit: all-gather, compute, reduce-scatter; compute long enough to hide the
    # prefetched gathers and the reduce-scatters (which share the ring's links with them):
    # exposed are the first forward gather, the last unit's backward gather (not prefetched
    # across the turn) and the last reduce-scatter
    n, m, opt = 4, 4e6, 1e-3
    a = (p - 1) / p * m / B
    f, b = 1.1 * a, 2.1 * a
    res = simulate_sharded(_spec("zero3", n, m, m, f, b, opt=opt), _star(p))
    assert res.iteration_s == pytest.approx(a + n * f + a + n * b + a + opt, rel=1e-9)
    assert res.exposed_comm_s == pytest.approx(3 * a, rel=1e-9)
    assert res.compute_s == pytest.approx(n * (f + b) + opt, rel=1e-9)


@pytest.mark.parametrize("mode", ["fsdp", "zero1", "zero2", "zero3", "hsdp"])
@pytest.mark.parametrize("p", [4, 8])
def test_bytes_per_rank_equal_the_closed_form(mode: str, p: int) -> None:
    topo = _star(p)
    sizes = [3e6, 5e6, 2e6]
    units = tuple(ShardUnit("(root)" if k == 0 else f"layers.{k}", 1000, 1e-4, 2e-4, Gather(s), Reduce(2 * s),
                            reshard=not (k == 0 and mode in ("fsdp", "hsdp")))
                  for k, s in enumerate(sizes))
    final = Gather(sum(sizes)) if mode in ("zero1", "zero2") else None
    spec = ShardedSpec(mode, units, 1e-4, group=2 if mode == "hsdp" else 0, final_gather=final)
    res = simulate_sharded(spec, topo)
    assert res.bytes_per_rank == pytest.approx(wire_bytes(spec, topo), rel=1e-12)
    g = 2 if mode == "hsdp" else p
    if mode in ("zero3",):  # every unit gathered twice, reduce-scattered once: (p-1)/p each
        assert res.bytes_per_rank == pytest.approx((p - 1) / p * sum(3 * s for s in sizes) + (p - 1) / p * sum(sizes),
                                                   rel=1e-12)
    if mode == "hsdp":  # within the group, then the shard allreduced over the p/g replicas
        n = p // g
        per = sum(2 * s * (g - 1) / g + 2 * s * (g - 1) / g + 2 * (n - 1) / n * 2 * s / g for s in sizes)
        per -= sizes[0] * (g - 1) / g  # the root unit is not gathered again for backward
        assert res.bytes_per_rank == pytest.approx(per, rel=1e-12)


def _scenario(parallelism: str, **kw) -> dict:
    model = {"name": "tiny", "llm": {"layers": 3, "hidden": 64, "intermediate": 128, "heads": 4, "kv_heads": 2,
                                     "vocab": 300, "seq_len": 16},
             "batch_size": 1, "seq_len": 16, "target_device": "H100", "precision": "fp32"}
    return {"name": "sharded", "model": model, "workers": 8, "parallelism": parallelism,
            "cluster": {"topology": "star", "bandwidth_Gbps": 100}, "codecs": ["fp32", "qsgd(bits=4, bucket=64)"],
            "baselines": ["fp32"], "measure": {"repeats": 1}, "verdict": {"draws": 19}, **kw}


def _rows(data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    sc = load_scenario(data)
    pts = expand(sc)
    prep = prepare(sc, points=pts, progress=False)
    return pts, prep, [evaluate_point(pt, prep)[0] for pt in pts]


def test_zero_stages_move_2psi_and_3psi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rajbhandari et al. 2020, §7: stages 1 and 2 move 2Ψ per rank per step, as DDP's
    # allreduce does; stage 3 moves 3Ψ (Ψ elements; fp32 here: 4 bytes each, p=8: (p-1)/p)
    data = _scenario("ddp", sweep={"parallelism": ["ddp", "zero1", "zero2", "zero3", "fsdp"]})
    pts, prep, rows = _rows(data, tmp_path, monkeypatch)
    psi = next(iter(prep.workloads.values())).num_params
    per = {pt.scenario.parallelism: {r.codec: r for r in rs} for pt, rs in zip(pts, rows, strict=True)}
    unit = 4 * psi * 7 / 8
    for mode in ("ddp", "zero1", "zero2"):
        assert per[mode]["fp32"].bytes_per_rank == pytest.approx(2 * unit, rel=1e-9), mode
    assert per["zero3"]["fp32"].bytes_per_rank == pytest.approx(3 * unit, rel=1e-9)
    # FSDP keeps the root unit (embeddings, final norm, output layer) gathered for backward
    wl = next(iter(prep.workloads.values()))
    root = sum(n for name, n in zip(wl.names, wl.numels, strict=True) if not name.startswith("layers."))
    assert per["fsdp"]["fp32"].bytes_per_rank == pytest.approx(3 * unit - 4 * root * 7 / 8, rel=1e-9)
    for mode, r in per.items():
        assert r["fp32"].parallelism == mode
        # fp32 parameters and gradients and Adam's two moments (K = 8 without a master copy)
        want = {"ddp": 16 * psi, "zero1": 8 * psi + 8 * psi / 8, "zero2": 4 * psi + 12 * psi / 8,
                "zero3": 16 * psi / 8, "fsdp": 16 * psi / 8}[mode]
        assert r["fp32"].model_state_bytes == pytest.approx(want, rel=1e-12)
        assert (r["fp32"].gathered_params_bytes > 0) == (mode in ("zero3", "fsdp"))
    # the quantized reduce-scatter sends fewer bytes than the fp32 one in every sharded mode
    for mode in ("zero1", "zero2", "zero3", "fsdp"):
        assert per[mode]["qsgd(bits=4, bucket=64)"].bytes_per_rank < per[mode]["fp32"].bytes_per_rank
        assert "hierarchical all-to-all" in per[mode]["qsgd(bits=4, bucket=64)"].collective


def test_memory_matches_the_zero_paper_figure_1() -> None:
    # Rajbhandari et al. 2020, Figure 1: Ψ = 7.5B, N_d = 64, mixed-precision Adam (K = 12):
    # baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB per device
    psi, nd = 7_500_000_000, 64
    published = {"ddp": 120e9, "zero1": 31.4e9, "zero2": 16.6e9, "zero3": 1.9e9}
    for mode, gb in published.items():
        got = memory(mode, psi, p=nd, group=nd, param_bytes=2, grad_bytes=2, optimizer_bytes=12).model_state_bytes
        digits = 3 if gb >= 10e9 else 2  # the figure's significant digits
        assert float(f"{got:.{digits}g}") == pytest.approx(gb, rel=1e-9), mode


def test_memory_of_a_scenario_states_the_gathered_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pts, prep, rows = _rows(_scenario("fsdp"), tmp_path, monkeypatch)
    wl = next(iter(prep.workloads.values()))
    sc = pts[0].scenario
    from gradwire.pipeline import build_topology

    mem = scenario_memory(sc, wl, build_topology(sc))
    blocks: dict[str, int] = {}
    for name, n in zip(wl.names, wl.numels, strict=True):
        key = ".".join(name.split(".")[:2]) if name.startswith("layers.") else "(root)"
        blocks[key] = blocks.get(key, 0) + n
    root = blocks.pop("(root)")
    # fp32 parameters: the root kept gathered and two adjacent blocks (one prefetched)
    assert mem.gathered_params_bytes == pytest.approx(4 * (root + 2 * max(blocks.values())), rel=1e-12)
    assert rows[0][0].gathered_params_bytes == mem.gathered_params_bytes


def test_rows_and_verdict_draws_run_one_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pts, prep, rows = _rows(_scenario("fsdp"), tmp_path, monkeypatch)
    from gradwire.pipeline import build_topology

    topo = build_topology(pts[0].scenario)
    for r in rows[0]:
        res, coll = simulate_codec(pts[0].scenario, prep, r.codec, topo)
        assert res.iteration_s == r.iteration_s and coll == r.collective
    assert rows[0][0].verdict_line  # the verdict's draws ran through the sharded timeline


@pytest.mark.parametrize(("servers", "gpus"), [(2, 4), (4, 2), (1, 4), (4, 1)])
def test_hierarchical_alltoall_bytes_and_work_as_declared(servers: int, gpus: int) -> None:
    topo = make_topology("servers", num_ranks=servers * gpus, num_servers=servers, gpus_per_server=gpus,
                         intra_bandwidth_Bps=4 * B, nic_bandwidth_Bps=B, intra_latency_s=0.0, nic_latency_s=0.0)
    p = servers * gpus
    env = simpy.Environment()
    net = Network(env, topo)
    work: list[tuple[str, float]] = []

    def run(kind: str, seconds: float) -> simpy.Event:
        work.append((kind, seconds))
        return env.timeout(seconds)

    nbytes, enc, dec = 8e6, 1e-3, 2e-3
    env.process(hierarchical_alltoall(net, list(range(p)), [nbytes] * p, encode_s=enc, decode_s=dec, work=run))
    env.run()
    n, g = rank_grid(topo, np.arange(p)).shape
    assert (n, g) == (servers, gpus)
    assert net.bytes_sent / p == pytest.approx(bytes_per_rank(nbytes, g, n), rel=1e-12)
    encodes = [s for k, s in work if k == "encode"]
    # the caller's whole-buffer encode, plus one re-encode of the 1/g partial sum per level
    assert len(encodes) == quantizations(g, n) - 1
    assert sum(encodes) == pytest.approx(enc / g * (quantizations(g, n) - 1))


def _qgz_data_path(grads: list[torch.Tensor], n: int, g: int, codec) -> tuple[list[torch.Tensor], np.ndarray, float]:
    """ZeRO++'s qgZ on real tensors with a real codec (the oracle of the declaration): each
    rank encodes its buffer; within a server each rank gets the 1/g slice it owns from its
    peers, decodes and adds them, re-encodes the partial sum; across servers the same local
    index exchanges 1/p slices of it, each decoded and added. Returns each rank's shard of
    the sum, how many times each element was encoded on its way to its shard, and the
    bytes each rank sent."""
    p = n * g
    size = grads[0].numel()
    per_enc = np.zeros(size, dtype=np.int64)  # encodes on the path of each element's final value
    sent = 0.0

    def enc(t: torch.Tensor, rank: int):
        return codec.encode(t, codec.new_state("cpu", worker=rank))

    sl = size // g
    partial: dict[int, torch.Tensor] = {}
    for s in range(n):
        ranks = [s * g + j for j in range(g)]
        for j, r in enumerate(ranks):  # rank r owns slice j of its server
            acc = torch.zeros(sl)
            for q in ranks:
                piece = grads[q][j * sl:(j + 1) * sl]
                pl = enc(piece, q)
                if q != r:
                    sent += pl.nbits / 8
                acc += codec.decode(pl)
            partial[r] = acc
    per_enc += 1
    shards: list[torch.Tensor] = []
    sub = sl // n
    for r in range(p):
        s, j = divmod(r, g)
        acc = torch.zeros(sub)
        for t in range(n):  # peers with the same local index on every server
            q = t * g + j
            piece = partial[q][s * sub:(s + 1) * sub]
            if n > 1 and g > 1:
                pl = enc(piece, q)
                if q != r:
                    sent += pl.nbits / 8
                acc += codec.decode(pl)
            else:
                acc += piece
        shards.append(acc)
    if n > 1 and g > 1:
        per_enc += 1
    return shards, per_enc, sent / p


@pytest.mark.parametrize(("n", "g"), [(2, 4), (1, 8), (2, 2)])
def test_qgz_data_path_matches_its_declaration(n: int, g: int) -> None:
    # a fixed-width 4-bit QSGD on buckets that tile every slice: the bytes the real data
    # path sends equal bytes_per_rank of the whole buffer's payload, each element is
    # encoded quantizations(g, n) times, and the sum is unbiased within its variance bound
    torch.manual_seed(0)
    p, size = n * g, 4096
    codec = make_codec("qsgd(bits=4, bucket=64)")
    grads = [torch.randn(size) for _ in range(p)]
    whole = codec.encode(grads[0], codec.new_state("cpu", worker=0)).nbits / 8
    shards, per_enc, sent = _qgz_data_path(grads, n, g, codec)
    assert sent == pytest.approx(bytes_per_rank(whole, g, n), rel=1e-12)
    assert (per_enc == quantizations(g, n)).all()
    topo = make_topology("servers", num_ranks=p, num_servers=n, gpus_per_server=g, intra_bandwidth_Bps=4 * B,
                         nic_bandwidth_Bps=B)
    assert quantizations(*rank_grid(topo, np.arange(p)).shape[::-1]) == quantizations(g, n)
    got = torch.cat([shards[r] for r in _shard_order(n, g)])
    true = torch.stack(grads).sum(0)
    # QSGD's variance bound, E||Q(v) - v||^2 <= min(d/s^2, sqrt(d)/s) ||v||^2 per bucket of d
    # (Alistarh et al. 2017, Lemma 3.1), over the first level's pieces and the second's
    # partial sums (||sum of g pieces||^2 <= g * sum of their ||.||^2, plus the first level's
    # error): E[err^2] <= f (1 + [two levels] (g + f)) sum ||grad||^2
    f = min(64 / codec.levels**2, math.sqrt(64) / codec.levels)
    two = quantizations(g, n) == 2
    bound = f * (1 + (g + f if two else 0)) * sum(float(x.pow(2).sum()) for x in grads)
    err = got - true
    assert float(err.pow(2).sum()) < 20 * bound  # Markov: fails with probability under 5%
    # unbiased: the errors are independent and mean-zero, so their sum is within 6 sigma
    assert abs(float(err.sum())) < 6 * math.sqrt(bound)


def _shard_order(n: int, g: int) -> list[int]:
    """Ranks in the order of their shards along the buffer: slice j of a server belongs to
    local index j, and its n sub-slices to the servers in order."""
    return [s * g + j for j in range(g) for s in range(n)]


def test_element_quantizations_follow_the_grid() -> None:
    topo = make_topology("servers", num_ranks=16, num_servers=2, gpus_per_server=8, intra_bandwidth_Bps=4 * B,
                         nic_bandwidth_Bps=B)
    spec = _spec("fsdp", 2, 1e6, 1e6, 1e-3, 1e-3)
    assert element_quantizations(spec, topo) == 2
    assert element_quantizations(ShardedSpec("hsdp", spec.units, 0.0, group=16), topo) == 1


def test_sharded_scenarios_refuse_what_they_cannot_simulate() -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario("fsdp", stragglers=[{"rank": 1, "slowdown": 2.0}]))
    assert "stragglers" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario("hsdp", sharding={"group": 3}))
    assert "sharding.group" in str(e.value) and "divisor" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario("zero2", codecs=["fp32", "powersgd(rank=2)"]))
    assert "codecs[1]" in str(e.value) and "sharded" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario("fsdp", sharding={"param_codec": "nosuch"}))
    assert "sharding.param_codec" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario("fsdp", overlap=False))
    assert "sharding.prefetch" in str(e.value)


@pytest.mark.parametrize("p", [4, 16])
def test_streamed_rings_equal_lockstep_rings_on_uncontended_links(p: int) -> None:
    # one collective at a time (no prefetch, no gradients): a streamed ring takes exactly
    # the lock-step ring's (g-1)(alpha + M/(gB)), latency and per-message overhead included
    topo = make_topology("servers", num_ranks=p, num_servers=p // 4, gpus_per_server=4, intra_bandwidth_Bps=4 * B,
                         nic_bandwidth_Bps=B, intra_latency_s=1e-6, nic_latency_s=5e-6)
    spec = _spec("zero3", 3, 4e6, 0.0, 1e-3, 2e-3, prefetch=False)
    a = simulate_sharded(spec, topo, per_message_overhead_s=3e-6)
    b = simulate_sharded(spec, topo, per_message_overhead_s=3e-6, lockstep=True)
    assert a.iteration_s == pytest.approx(b.iteration_s, rel=1e-9)
    assert a.bytes_per_rank == pytest.approx(b.bytes_per_rank, rel=1e-12)


@pytest.mark.parametrize("p", [8, 16])
def test_hsdp_encoded_gradients_bytes_and_quantizations(p: int) -> None:
    topo = _star(p)
    g = 4
    n = p // g
    units = tuple(ShardUnit(f"layers.{k}", 1000, 1e-4, 2e-4, Gather(3e6), Reduce(1e6, 1e-4, 2e-4, quantized=True))
                  for k in range(3))
    spec = ShardedSpec("hsdp", units, 0.0, group=g)
    res = simulate_sharded(spec, topo)
    # the group's all-to-all, then a compressed allreduce of the 1/g shard over n replicas
    per_unit = 2 * 3e6 * (g - 1) / g + 1e6 * (g - 1) / g + 2 * (n - 1) / n * 1e6 / g
    assert res.bytes_per_rank == pytest.approx(3 * per_unit, rel=1e-12)
    assert res.bytes_per_rank == pytest.approx(wire_bytes(spec, topo), rel=1e-12)
    assert element_quantizations(spec, topo) == 3
    # encode work per unit: the whole buffer, the 1/g partial sum, the 1/(gn) reduced slice
    assert res.encode_total_s == pytest.approx(3 * 1e-4 * (1 + 1 / g + 1 / (g * n)), rel=1e-9)


@pytest.mark.parametrize(("servers", "gpus", "shifts"), [(16, 4, 4), (12, 2, 5), (8, 8, 3)])
def test_shifted_alltoall_takes_the_full_alltoalls_time(servers: int, gpus: int, shifts: int) -> None:
    # one NIC per GPU on a non-blocking switch: each rank's NIC bounds the exchange, so k
    # shift permutations carrying (m-1)/k of a peer's chunk each take the all-pairs time
    p = servers * gpus
    topo = make_topology("servers", num_ranks=p, num_servers=servers, gpus_per_server=gpus,
                         intra_bandwidth_Bps=4 * B, nic_bandwidth_Bps=B, nics_per_server=gpus)

    def run(k: int) -> tuple[float, float, int]:
        env = simpy.Environment()
        net = Network(env, topo, per_message_overhead_s=2e-6)
        env.process(hierarchical_alltoall(net, list(range(p)), [6e6] * p, encode_s=1e-4, decode_s=2e-4, shifts=k))
        env.run()
        return env.now, net.bytes_sent, net.n_transfers

    full, shifted = run(0), run(shifts)
    assert shifted[0] == pytest.approx(full[0], rel=1e-9)
    assert shifted[1] == pytest.approx(full[1], rel=1e-12)
    assert shifted[2] < full[2]


def test_encoded_parameter_gather_moves_the_codecs_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ZeRO++'s qwZ: the all-gather carries sharding.param_codec's payload (8-bit QSGDinf on
    # buckets of 256: 8 bits per element plus a 32-bit scale per bucket), each rank encodes
    # its shard and decodes all of them
    data = _scenario("zero3", codecs=["fp32"], sweep={"sharding.param_codec": [None, "qsgdinf(bits=8, bucket=256)"]})
    _, prep, rows = _rows(data, tmp_path, monkeypatch)
    plain, coded = rows[0][0], rows[1][0]
    wl = next(iter(prep.workloads.values()))
    key = next(iter(prep.workloads))
    pprof = prep.codecs[(key, "qsgdinf(bits=8, bucket=256)")]
    payload = sum(sum((b + 7) // 8 for b in c.nbits) / len(c.nbits) for c in pprof.params)
    reduce_bytes = 4 * wl.num_params * 7 / 8
    assert plain.bytes_per_rank == pytest.approx(2 * 4 * wl.num_params * 7 / 8 + reduce_bytes, rel=1e-9)
    assert coded.bytes_per_rank == pytest.approx(2 * payload * 7 / 8 + reduce_bytes, rel=1e-9)
    assert payload < 4 * wl.num_params  # tensors under the codec's min_numel travel as they are
    assert "(encoded)" in coded.collective and coded.encode_s > 0 and coded.decode_s > 0
    assert plain.encode_s == 0


def test_untraced_points_give_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A break-even step evaluates points with traces=False: no drawing (segments, link
    loads), the same rows."""
    data = _scenario("fsdp", sweep={"parallelism": ["ddp", "fsdp", "hsdp"]},
                     cluster={"topology": "servers", "gpus_per_server": 4, "intra_bandwidth_Gbps": 2400,
                              "nic_bandwidth_Gbps": 100}, verdict={"enabled": False})
    pts, prep, rows = _rows(data, tmp_path, monkeypatch)
    for pt, traced in zip(pts, rows, strict=True):
        bare, traces = evaluate_point(pt, prep, traces=False)
        assert traces == [] and len(bare) == len(traced)
        for a, b in zip(bare, traced, strict=True):  # NaN (no 1-bit reference) equals NaN here
            fa, fb = a.flat(), b.flat()
            assert fa.keys() == fb.keys()
            assert all(fa[k] == fb[k] or (fa[k] != fa[k] and fb[k] != fb[k]) for k in fa), a.codec
        _, drawn = evaluate_point(pt, prep)
        assert all(t.segments and t.links for t in drawn)
