"""Uncompressed baselines: fp32, and bf16/fp16 accumulated in the wire dtype or in fp32.

Each exchange is taken from the codec's own declaration and run through evaluate_point on a
hand-made workload, so every expected time and byte count is a closed form of the star
topology (alpha-beta ring collectives, contention free), as in test_iteration.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from gradwire.baselines import LLM_DEFAULT
from gradwire.codecs import make_codec
from gradwire.errors import ConfigError, ScenarioError
from gradwire.pipeline import (
    CodecProfile,
    ParamCost,
    Prepared,
    WorkloadSummary,
    evaluate_point,
    workload_key,
)
from gradwire.scenarios.loader import Point, expand, load_scenario

GBPS = 10.0
BW = GBPS * 1e9 / 8
LAT = 2e-6  # per link: a star route is two links
F, B, O = 0.004, 0.010, 0.002  # noqa: E741
NUMELS = (500_000, 250_000)
N = sum(NUMELS)
READY = (0.004, B)
ENC, DEC = (1e-3, 5e-4), (4e-4, 2e-4)  # cast down, cast up: per parameter, seconds
SUM = (3e-4, 1.5e-4)  # adding one cast-up gradient into the float32 sum
P = 4
BF16_FP32 = "bf16(accumulate='fp32')"
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, BF16_FP32: 16, "qsgd(bits=4)": 4}


def alpha() -> float:
    return 2 * LAT


def ring_allreduce_s(m: float) -> float:
    return 2 * (P - 1) * alpha() + 2 * (P - 1) / P * m / BW


def ring_allgather_s(m: float) -> float:
    return (P - 1) * alpha() + (P - 1) * m / BW


def scenario(codecs: list[str], **extra):
    return load_scenario({
        "name": "baselines", "workers": P, "codecs": codecs, "overlap": False,
        "cluster": {"topology": "star", "bandwidth_Gbps": GBPS, "latency_us": LAT * 1e6},
        "bucket_MB": 25, "first_bucket_MB": 25, **extra,
    })  # fmt: skip


def rows_for(sc) -> dict:
    wl = WorkloadSummary("handmade", 1, "cpu", F, B, O, NUMELS, READY, ("a", "b"), False, "synthetic")
    prep = Prepared(workloads={workload_key(sc): wl}, sum_s={workload_key(sc): SUM})
    for spec in sc.codecs:
        codec = make_codec(spec)  # the codec's own declared exchange
        bpe = BITS[spec]
        params = tuple(ParamCost(n, (n * bpe, n * bpe), e, d) for n, e, d in zip(NUMELS, ENC, DEC, strict=True))
        prep.codecs[(workload_key(sc), spec)] = CodecProfile(spec, codec.name, codec.summable, params,
                                                             exchange=codec.exchange)  # fmt: skip
    rows, _ = evaluate_point(Point(0, "p0", {}, sc), prep)
    return {r.codec: r for r in rows}


def test_bf16_accumulated_on_the_wire_is_one_cast_each_way_around_a_bf16_allreduce() -> None:
    r = rows_for(scenario(["bf16"]))["bf16"]
    m = 2 * N  # bytes of the bf16 bucket
    assert r.iteration_s == pytest.approx(F + B + O + sum(ENC) + ring_allreduce_s(m) + sum(DEC), rel=1e-9)
    assert r.bytes_per_rank == pytest.approx(2 * (P - 1) / P * m, rel=1e-12)
    assert r.collective == "ring_allreduce" and r.uncompressed


def test_bf16_accumulated_in_fp32_through_an_allgather_adds_every_payload_in_fp32() -> None:
    # every rank casts up and adds all p payloads: p (cast up + add); a gather with length
    # prefix first gathers 8-byte lengths, as for every payload exchange
    r = rows_for(scenario([BF16_FP32]))[BF16_FP32]
    m = 2 * N
    expected = F + B + O + sum(ENC) + ring_allgather_s(8) + ring_allgather_s(m) + P * (sum(DEC) + sum(SUM))
    assert r.iteration_s == pytest.approx(expected, rel=1e-9)
    assert r.decode_s == pytest.approx(P * (sum(DEC) + sum(SUM)), rel=1e-9)
    assert r.bytes_per_rank == pytest.approx((P - 1) * (m + 8), rel=1e-12)
    assert r.collective == "ring_allgather" and r.uncompressed


def test_bf16_accumulated_in_fp32_through_a_reduce_scatter_moves_the_allreduce_bytes() -> None:
    # the same bytes as the bf16 allreduce; every hop casts a 1/p chunk up, adds it in fp32
    # and casts the partial sum back down: the reduction cost is what differs
    sc = scenario(["bf16", BF16_FP32], exchange={"quantized": "compressed_allreduce"})
    rows = rows_for(sc)
    wire, fp32 = rows["bf16"], rows[BF16_FP32]
    m = 2 * N
    alone = 2 * (P - 1) * (alpha() + m / P / BW)
    enc, dec = sum(ENC), sum(DEC) + sum(SUM)
    codec = enc / P + (P - 1) * (dec + enc) / P + (P - 1) * dec / P
    assert fp32.iteration_s == pytest.approx(F + B + O + alone + codec, rel=1e-9)
    assert fp32.bytes_per_rank == pytest.approx(wire.bytes_per_rank, rel=1e-12)
    assert wire.bytes_per_rank == pytest.approx(2 * (P - 1) / P * m, rel=1e-12)


def test_fp32_moves_twice_the_bytes_with_no_codec_work() -> None:
    r = rows_for(scenario(["fp32"]))["fp32"]
    assert r.bytes_per_rank == pytest.approx(2 * (P - 1) / P * 4 * N, rel=1e-12)
    assert r.iteration_s == pytest.approx(F + B + O + ring_allreduce_s(4 * N), rel=1e-9)
    assert r.encode_s == 0 and r.decode_s == 0


def test_speedups_against_the_best_uncompressed_baseline() -> None:
    rows = rows_for(scenario(["fp32", "bf16", BF16_FP32, "qsgd(bits=4)"]))
    base = [r for r in rows.values() if r.uncompressed]
    assert {r.codec for r in base} == {"fp32", "bf16", BF16_FP32}
    best = min(base, key=lambda r: r.iteration_s)
    for r in rows.values():
        assert r.best_baseline == best.codec
        assert r.speedup_vs_best_baseline == pytest.approx(best.iteration_s / r.iteration_s, rel=1e-12)
        assert r.speedup_vs_fp32 == pytest.approx(rows["fp32"].iteration_s / r.iteration_s, rel=1e-12)
    assert best.speedup_vs_best_baseline == 1.0
    assert not rows["qsgd(bits=4)"].uncompressed
    # a compressed codec is credited less against the best baseline than against fp32
    q = rows["qsgd(bits=4)"]
    assert q.speedup_vs_best_baseline <= q.speedup_vs_fp32


def test_fp32_accumulation_sums_the_rounded_payloads_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(4096, generator=g) * 10 ** (k - 2) for k in range(4)]
    codec = make_codec(BF16_FP32)
    states = [codec.new_state("cpu", worker=k) for k in range(len(xs))]
    got = codec.aggregate(xs, states)
    want = torch.stack([x.to(torch.bfloat16).float() for x in xs]).sum(0) / len(xs)
    assert torch.equal(got, want)


def test_accumulate_parameter() -> None:
    assert make_codec(BF16_FP32).spec() == BF16_FP32
    assert make_codec("bf16").spec() == "bf16" and make_codec("bf16").summable
    assert not make_codec(BF16_FP32).summable and make_codec(BF16_FP32).exchange.baseline
    assert make_codec("fp32(accumulate='fp32')").spec() == "fp32"  # one accumulation only
    with pytest.raises(ConfigError, match="accumulate"):
        make_codec("fp16(accumulate='int8')")


def test_scenario_baselines() -> None:
    llm = {"name": "llama-2-7b", "target_device": "H100", "batch_size": 1}
    sc = scenario(["qsgd(bits=4)"], model=llm)
    assert sc.codecs[0] == LLM_DEFAULT == "bf16"  # PyTorch FSDP2's bf16 reduction
    assert all(pt.scenario.codecs[0] == "bf16" for pt in expand(sc))
    assert scenario(["qsgd(bits=4)"], model=llm, baselines=[]).codecs == ["qsgd(bits=4)"]
    both = scenario(["qsgd(bits=4)"], model=llm, baselines=["fp32", BF16_FP32])
    assert both.codecs == ["fp32", BF16_FP32, "qsgd(bits=4)"]
    assert scenario(["qsgd(bits=4)"]).codecs == ["qsgd(bits=4)"]  # DDP models: nothing added
    same = scenario(["bf16(accumulate='wire')"], model=llm).codecs
    assert same == ["bf16(accumulate='wire')"]  # the default is already there
    with pytest.raises(ScenarioError) as e:
        scenario(["fp32"], baselines=["qsgd(bits=4)"])
    assert "baselines[0]" in str(e.value) and "compresses" in str(e.value)
    assert not math.isnan(rows_for(scenario(["bf16", "qsgd(bits=4)"]))["qsgd(bits=4)"].speedup_vs_best_baseline)


def test_table_shows_the_best_baseline_column_when_it_is_not_fp32() -> None:
    from gradwire.report.table import BEST_BASELINE_COLUMN, format_summary

    slow = {"topology": "star", "bandwidth_Gbps": 1.0, "latency_us": 2.0}  # bf16 beats fp32 here
    by = rows_for(scenario(["fp32", "bf16", "qsgd(bits=4)"], cluster=slow))
    assert by["qsgd(bits=4)"].best_baseline == "bf16"
    rows = list(by.values())
    lines = format_summary(rows, "csv").splitlines()
    header = lines[0].split(",")
    assert header[header.index("vs fp32") + 1] == BEST_BASELINE_COLUMN
    q = next(ln.split(",") for ln in lines[1:] if "qsgd" in ln)
    best = by["qsgd(bits=4)"].speedup_vs_best_baseline
    assert q[header.index(BEST_BASELINE_COLUMN)] == f"{best:.2f}×"
    only_fp32 = list(rows_for(scenario(["fp32", "qsgd(bits=4)"])).values())
    assert BEST_BASELINE_COLUMN not in format_summary(only_fp32, "csv").splitlines()[0]
