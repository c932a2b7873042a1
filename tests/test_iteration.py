"""The iteration builder and evaluate_point against hand calculations on a hand-made workload.

No profiling: the workload and the codec costs are plain numbers, so each expected time is
a closed form of the star topology (alpha-beta ring collectives, contention free).
"""

from __future__ import annotations

import pytest

from gradwire.codecs.exchange import CAST, IN_PLACE, PAYLOAD, Exchange
from gradwire.errors import ConfigError, ScenarioError
from gradwire.iteration import BucketInput, ExchangeChoice, ddp_buckets, iteration_spec
from gradwire.pipeline import (
    CodecProfile,
    ParamCost,
    Prepared,
    WorkloadSummary,
    evaluate_point,
    workload_key,
)
from gradwire.scenarios.loader import Point, load_scenario
from gradwire.simulator.timeline import simulate_iteration
from gradwire.simulator.topology import make_topology

GBPS = 10.0
BW = GBPS * 1e9 / 8
LAT = 2e-6  # per link: a star route is two links
F, B, O = 0.004, 0.010, 0.002  # noqa: E741
NUMELS = (500_000, 250_000)  # backward order: 2 MB and 1 MB of fp32
READY = (0.004, B)
ENC, DEC = (1e-3, 5e-4), (4e-4, 2e-4)  # per parameter, seconds
SUM = (3e-4, 1.5e-4)  # adding one decoded gradient into the float32 sum
P = 4


def alpha() -> float:
    return 2 * LAT


def ring_allreduce_s(m: float) -> float:
    return 2 * (P - 1) * alpha() + 2 * (P - 1) / P * m / BW


def ring_allgather_s(m: float) -> float:
    return (P - 1) * alpha() + (P - 1) * m / BW


def scenario(codecs: list[str], **extra):
    data = {
        "name": "oracle", "workers": P, "codecs": codecs, "overlap": False,
        "cluster": {"topology": "star", "bandwidth_Gbps": GBPS, "latency_us": LAT * 1e6},
        "bucket_MB": 25, "first_bucket_MB": 25, **extra,
    }
    return load_scenario(data)


def prepared(sc, codecs: dict[str, tuple[Exchange, int]]) -> Prepared:
    """``codecs``: spec -> (exchange, bits per element of its payload)."""
    wl = WorkloadSummary("handmade", 1, "cpu", F, B, O, NUMELS, READY, ("a", "b"), False, "synthetic")
    prep = Prepared(workloads={workload_key(sc): wl}, sum_s={workload_key(sc): SUM})
    for spec, (ex, bpe) in codecs.items():
        params = tuple(ParamCost(n, (n * bpe, n * bpe), e, d) for n, e, d in zip(NUMELS, ENC, DEC, strict=True))
        prep.codecs[(workload_key(sc), spec)] = CodecProfile(spec, spec, ex.summable, params, exchange=ex)
    return prep


def rows_for(sc, codecs):
    pt = Point(0, "p0", {}, sc)
    rows, _ = evaluate_point(pt, prepared(sc, codecs))
    return {r.codec: r for r in rows}


def test_fp32_is_compute_plus_ring_allreduce_with_no_codec_time() -> None:
    sc = scenario(["fp32"])
    r = rows_for(sc, {"fp32": (IN_PLACE, 32)})["fp32"]
    m = 4 * sum(NUMELS)
    assert r.iteration_s == pytest.approx(F + B + O + ring_allreduce_s(m), rel=1e-9)
    assert r.encode_s == 0.0 and r.decode_s == 0.0
    assert r.bytes_per_rank == pytest.approx(2 * (P - 1) / P * m, rel=1e-12)


def test_bf16_gradients_halve_the_fp32_exchange() -> None:
    sc = scenario(["fp32"], model={"dtype": "bfloat16"})
    r = rows_for(sc, {"fp32": (IN_PLACE, 32)})["fp32"]
    assert r.iteration_s == pytest.approx(F + B + O + ring_allreduce_s(2 * sum(NUMELS)), rel=1e-9)


def test_quantized_codec_pays_encode_length_round_allgather_and_p_decodes() -> None:
    """Encode, an 8-byte length allgather, the payload allgather, then p decodes each
    added into the float32 sum."""
    sc = scenario(["qsgd(bits=4)"])
    r = rows_for(sc, {"qsgd(bits=4)": (PAYLOAD, 4)})["qsgd(bits=4)"]
    m = 4 * sum(NUMELS) / 8  # 4 bits per element
    expected = F + B + O + sum(ENC) + ring_allgather_s(8) + ring_allgather_s(m) + P * (sum(DEC) + sum(SUM))
    assert r.iteration_s == pytest.approx(expected, rel=1e-9)
    assert r.encode_s == pytest.approx(sum(ENC), rel=1e-9)
    assert r.decode_s == pytest.approx(P * (sum(DEC) + sum(SUM)), rel=1e-9)


def test_compressed_reduce_scatter_through_evaluate_point() -> None:
    """Per hop one chunk's decode + add and re-encode; communication is the collective alone."""
    sc = scenario(["qsgd(bits=4)"], exchange={"quantized": "compressed_allreduce"})
    r = rows_for(sc, {"qsgd(bits=4)": (PAYLOAD, 4)})["qsgd(bits=4)"]
    m = 4 * sum(NUMELS) / 8
    alone = 2 * (P - 1) * (alpha() + m / P / BW)
    enc, dec = sum(ENC), sum(DEC) + sum(SUM)
    codec = enc / P + (P - 1) * (dec + enc) / P + (P - 1) * dec / P
    assert r.iteration_s == pytest.approx(F + B + O + alone + codec, rel=1e-9)
    assert r.exposed_comm_s == pytest.approx(alone, rel=1e-9)
    assert r.encode_s + r.decode_s == pytest.approx(codec, rel=1e-9)


def test_fp16_pays_one_cast_each_way() -> None:
    sc = scenario(["fp16"])
    r = rows_for(sc, {"fp16": (CAST, 16)})["fp16"]
    expected = F + B + O + sum(ENC) + ring_allreduce_s(2 * sum(NUMELS)) + sum(DEC)
    assert r.iteration_s == pytest.approx(expected, rel=1e-9)
    assert r.encode_s == pytest.approx(sum(ENC)) and r.decode_s == pytest.approx(sum(DEC))


def test_powersgd_two_rounds_from_declared_round_bytes() -> None:
    ex = Exchange(("sum", "sum"), encode_split=(0.5, 0.5))
    bi = BucketInput(1000, B, ((6e5, 2e5),), 2e-3, 1e-3)
    spec = iteration_spec(forward_s=F, backward_s=B, optimizer_s=O, buckets=[bi], exchange=ex, codec="powersgd",
                          choice=ExchangeChoice(), p=P, overlap=False)
    res = simulate_iteration(spec, make_topology("star", num_ranks=P, bandwidth_Bps=BW, latency_s=LAT))
    expected = F + B + O + 1e-3 + ring_allreduce_s(6e5) + 1e-3 + ring_allreduce_s(2e5) + 1e-3
    assert res.iteration_s == pytest.approx(expected, rel=1e-9)


def test_quantized_codec_through_a_summing_collective_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"exchange\.quantized"):
        iteration_spec(forward_s=F, backward_s=B, optimizer_s=O, buckets=[], exchange=PAYLOAD, codec="qsgd(bits=4)",
                       choice=ExchangeChoice(quantized="ring_allreduce"), p=P)


def test_bad_exchange_options_name_the_field() -> None:
    with pytest.raises(ScenarioError) as err:
        scenario(["fp32"], exchange={"summable": "ring_allreduce", "summable_options": {"num_servers": 2}})
    assert "exchange.summable_options" in str(err.value) and "num_servers" in str(err.value)
    with pytest.raises(ScenarioError) as err:
        scenario(["fp32", "qsgd(bits=4)"], exchange={"quantized": "ring_allreduce"})
    assert "exchange.quantized" in str(err.value)
    ok = scenario(["fp32"], exchange={"summable": "parameter_server", "summable_options": {"num_servers": 2}})
    assert dict(ok.exchange.summable_options) == {"num_servers": 2}


def test_ddp_buckets_first_bucket_then_cap() -> None:
    mib = 2**20
    numels = [mib // 8] * 3 + [mib] * 10  # 3 x 0.5 MiB, then 10 x 4 MiB of fp32
    groups = ddp_buckets(numels, 10 * mib, elem_bytes=4, first_bucket_bytes=mib)
    assert groups[0] == [0, 1]  # 1 MiB reached after two 0.5 MiB gradients
    assert groups[1] == [2, 3, 4, 5]  # 0.5 + 3 x 4 MiB >= 10 MiB
    assert sum(len(g) for g in groups) == len(numels)


def test_a_gradient_the_codec_refuses_is_named_by_its_parameter() -> None:
    from types import SimpleNamespace

    import torch

    from gradwire.errors import NonFiniteGradientError
    from gradwire.pipeline import codec_profile

    sc = scenario(["qsgd(bits=4)"])
    good, bad = torch.ones(64, 64), torch.ones(32)
    bad[3] = float("nan")
    wl = SimpleNamespace(params=[SimpleNamespace(name="fc.weight", shape=(64, 64), numel=4096),
                                 SimpleNamespace(name="fc.bias", shape=(32,), numel=32)],
                         gradients={"fc.weight": good, "fc.bias": bad})
    with pytest.raises(NonFiniteGradientError, match=r"'fc\.bias'"):
        codec_profile(sc, "qsgd(bits=4)", wl, "cpu", lambda _m: None)
