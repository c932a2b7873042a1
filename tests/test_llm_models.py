"""LLM decoders built on the meta device: published counts, no memory, FLOPs against the closed
form, gradient order, the scenario path (never run here) and the synthetic payload source."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gradwire.errors import ConfigError, ScenarioError, WorkloadError
from gradwire.llm_codecs import SAMPLE_ELEMENTS, SOURCE_LABEL, payload_bits, sample_rows
from gradwire.models import build_model, count_params
from gradwire.models.flops import trace_spec
from gradwire.models.zoo.llama import (
    SHIPPED,
    DecoderConfig,
    attention_flops,
    decoder_spec,
    matmul_params,
    training_flops,
)
from gradwire.pipeline import evaluate_point, expand, prepare
from gradwire.scenarios.loader import load_scenario

TINY_GQA = DecoderConfig(layers=2, hidden=64, intermediate=160, heads=4, kv_heads=2, vocab=100,
                         tied_embeddings=True)  # fmt: skip
TINY_MHA = DecoderConfig(layers=3, hidden=48, intermediate=128, heads=6, kv_heads=6, vocab=77)


@pytest.mark.parametrize("entry", SHIPPED, ids=[s.name for s in SHIPPED])
def test_meta_count_matches_published(entry) -> None:
    model = build_model(entry.name, device="meta")
    n = count_params(model)
    # the model cards give three significant digits (0.5% covers their rounding)
    assert abs(n - entry.published_params) <= 0.005 * entry.published_params
    assert n == entry.config.param_count()
    assert all(p.is_meta for p in model.parameters())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_meta_build_allocates_no_weights() -> None:
    build_model("llama-3.2-1b", device="meta")  # warm the import and allocator paths
    before = _rss_bytes()
    model = build_model("llama-3-70b", device="meta")
    grown = _rss_bytes() - before
    weights = sum(p.numel() * 4 for p in model.parameters())
    smallest = min(p.numel() * 4 for p in model.parameters() if p.dim() == 2)
    assert weights > 2.5e11  # 70.6B float32 parameters
    # not one weight matrix was materialized: growth below the smallest one (k_proj, 32 MiB)
    assert grown < smallest, (grown, smallest)


@pytest.mark.parametrize("cfg,batch,seq", [(TINY_GQA, 2, 16), (TINY_MHA, 3, 10)])
def test_trace_flops_equal_closed_form(cfg: DecoderConfig, batch: int, seq: int) -> None:
    # PyTorch counts matrix products and attention kernels exactly and nothing else, so the
    # trace must equal 6 N_matmul T + 14 B s^2 L h to rounding
    tr = trace_spec(decoder_spec("tiny", cfg, seq), batch)
    assert tr.total_flops() == pytest.approx(training_flops(cfg, batch, seq), rel=1e-12)
    fwd = tr.total_flops(0)
    assert fwd == pytest.approx(2 * matmul_params(cfg) * batch * seq + 4 * batch * seq**2 * cfg.layers
                                * cfg.hidden, rel=1e-12)  # fmt: skip


def test_shipped_flops_against_six_n() -> None:
    e = next(s for s in SHIPPED if s.name == "llama-3.2-1b")
    seq = 512
    tr = trace_spec(decoder_spec(e.name, e.config, seq), 1)
    assert tr.total_flops() == pytest.approx(training_flops(e.config, 1, seq), rel=1e-12)
    # against the rule of thumb 6 N T (all parameters): off by the norms, the lookup-only
    # part of the embedding (none when tied) and the attention term, and by nothing else
    n = count_params(build_model(e.name, device="meta"))
    six_n = 6 * n * seq
    expected_gap = attention_flops(e.config, 1, seq) - 6 * (n - matmul_params(e.config)) * seq
    assert tr.total_flops() - six_n == pytest.approx(expected_gap, rel=1e-9)


def test_gradient_order_is_reverse_of_forward() -> None:
    tr = trace_spec(decoder_spec("tiny", TINY_MHA, 8), 1)
    names = [n for n, _ in tr.params]
    assert names[0] == "lm_head.weight" and names[1] == "norm.weight" and names[-1] == "embed_tokens.weight"
    layer_of = [int(n.split(".")[1]) for n in names if n.startswith("layers.")]
    assert layer_of == sorted(layer_of, reverse=True)
    model = build_model("llama-2-7b", device="meta")
    assert len(names) == 3 * 9 + 3 and len(list(model.parameters())) == 32 * 9 + 3


def _scenario(model: dict, **kw) -> dict:
    return {"name": "llm", "model": model, "workers": 4, "cluster": {"topology": "star", "bandwidth_Gbps": 100},
            "codecs": ["fp32", "bf16", "qsgd(bits=4, bucket=512)"], "measure": {"repeats": 1}, **kw}


INLINE = {"layers": 2, "hidden": 128, "intermediate": 256, "heads": 4, "kv_heads": 2, "vocab": 500,
          "seq_len": 32}  # fmt: skip


def test_scenario_refuses_what_cannot_hold() -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario({"name": "llama-2-7b", "batch_size": 1}))
    assert "model.target_device" in str(e.value) and "never" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario({"name": "resnet50", "seq_len": 128}))
    assert "model.seq_len" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario({"name": "gpt2_small", "llm": INLINE, "target_device": "H100"}))
    assert "model.name" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario({"name": "mine", "llm": {**INLINE, "heads": 3}, "target_device": "H100"}))
    assert "model.llm.heads" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario({"name": "llama-2-7b", "target_device": "H100",
                                 "measured": {"forward_ms": 1.0, "backward_ms": 2.0}}))
    assert "model.measured" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario({"name": "mine", "llm": {**INLINE, "layers": 10**6}, "target_device": "H100"}))
    assert "model.llm.layers" in str(e.value)


def test_shipped_example_scenario_is_valid() -> None:
    sc = load_scenario(Path(__file__).resolve().parents[1] / "examples" / "llama_baselines.yaml")
    pts = expand(sc)
    assert len(pts) == 2 and all(pt.scenario.codecs[0] == "bf16" for pt in pts)


def test_never_profiled_on_the_host() -> None:
    from gradwire.models import profile_model

    with pytest.raises(WorkloadError, match="meta device only"):
        profile_model("llama-3.2-1b", 1, device="cpu", cache=False)


def _rows(model: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    sc = load_scenario(_scenario(model))
    pts = expand(sc)
    prep = prepare(sc, points=pts, progress=False)
    rows, _ = evaluate_point(pts[0], prep)
    return rows


def test_inline_decoder_runs_without_running_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = {"name": "mine", "llm": INLINE, "batch_size": 2, "seq_len": 16, "target_device": "H100",
             "precision": "amp_bf16"}  # fmt: skip
    rows = _rows(model, tmp_path, monkeypatch)
    again = _rows(model, tmp_path / "again", monkeypatch)
    assert repr([r.flat() for r in rows]) == repr([r.flat() for r in again])  # same scenario + seed
    cfg = DecoderConfig(2, 128, 256, 4, 2, 500)
    n = cfg.param_count()
    by = {r.codec_name: r for r in rows}
    assert by["bf16"].bits_per_element == pytest.approx(16.0)  # exact: a cast of every element
    assert by["fp32"].compression_ratio == pytest.approx(1.0)
    for r in rows:
        assert r.estimate and r.compute_source.startswith("estimate")
        assert SOURCE_LABEL in r.codec_source and r.model == "mine"
        assert r.device == "meta"
    # ring allreduce of the fp32 gradient: 2 (p-1)/p of 4 N bytes per rank
    assert by["fp32"].bytes_per_rank == pytest.approx(2 * 3 / 4 * 4 * n, rel=1e-9)


def test_synthetic_payload_extends_exactly_when_affine_in_rows() -> None:
    from gradwire.codecs import make_codec

    shape = (2 * SAMPLE_ELEMENTS // 1024 + 1000, 1024)  # encoded at two smaller row counts
    assert sample_rows(shape) is not None
    n = math.prod(shape)
    assert payload_bits(make_codec("bf16"), shape, 0, 2, "cpu") == (16 * n, 16 * n)
    rank = 4
    ps = make_codec(f"powersgd(rank={rank})")
    assert payload_bits(ps, shape, 0, 1, "cpu") == (32 * rank * (shape[0] + shape[1]),)
    # the source is seeded: same seed, same bits; the draw is real (qsgd's Elias code varies)
    q = make_codec("qsgd(bits=4, bucket=512, encoding='elias')")
    small = (300, 257)
    assert payload_bits(q, small, 5, 2, "cpu") == payload_bits(q, small, 5, 2, "cpu")
    assert payload_bits(q, small, 5, 1, "cpu") != payload_bits(q, small, 6, 1, "cpu")


def _profile_file(tmp_path: Path, seq_len: int) -> Path:
    """A workload file as `run_sim.py profile mine --seq-len N` writes on a GPU (made by hand
    here: the decoder is never run on the host)."""
    import json

    from gradwire.models.profile import ParamInfo, Workload
    from gradwire.models.workload_file import write_workload_file

    cfg = DecoderConfig(2, 128, 256, 4, 2, 500)
    tr = trace_spec(decoder_spec("mine", cfg, seq_len), 2)
    params = [ParamInfo(n, s, math.prod(s), 5e-4 * (i + 1)) for i, (n, s) in enumerate(tr.params)]
    wl = Workload("mine", 2, "cuda", "float32", torch.__version__, "tokens", 0.010, 0.020, 0.003, 0,
                  params, None, [], device_name="NVIDIA H100 80GB HBM3", precision="amp_bf16")
    path = write_workload_file(wl, tmp_path / "mine.json", seq_len=seq_len)
    assert json.loads(path.read_text())["model"]["seq_len"] == seq_len
    return path


def test_profile_file_gives_the_compute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _profile_file(tmp_path, 16)
    model = {"name": "mine", "llm": INLINE, "batch_size": 2, "seq_len": 16, "target_device": "H100",
             "profile": str(path)}  # fmt: skip
    rows = _rows(model, tmp_path, monkeypatch)
    for r in rows:
        assert r.compute_source.startswith("measured file")  # codec times: the cost model
        assert r.forward_s == pytest.approx(0.010) and r.backward_s == pytest.approx(0.020)
    with pytest.raises(ConfigError, match=r"model\.seq_len"):
        _rows({**model, "seq_len": 32}, tmp_path / "b", monkeypatch)


def test_check_cost_runs_nothing_of_a_decoder() -> None:
    from gradwire.cost_estimate import estimate_cost
    from gradwire.llm_codecs import encoded_shapes
    from gradwire.models.sources import profile_calls

    sc = load_scenario(_scenario({"name": "mine", "llm": INLINE, "target_device": "H100"}))
    assert profile_calls(sc, "cpu") == []
    est = estimate_cost(expand(sc), device="cpu")
    (w,) = est.workloads
    assert w.never_run and w.profile_steps == 0 and w.profile_s == 0
    shapes = [s for _, s in trace_spec(decoder_spec("mine", DecoderConfig(2, 128, 256, 4, 2, 500), 32), 1).params]
    assert w.memory_bytes == 8 * max(math.prod(s) for s in encoded_shapes(shapes))


def test_tiny_decoder_runs_in_16_bit_weights() -> None:
    # what a GPU profile with model.dtype bfloat16 runs: q, k and v must agree in dtype
    from gradwire.models.zoo.llama import Decoder

    model = Decoder(TINY_GQA).to(torch.bfloat16)
    out = model(torch.randint(0, TINY_GQA.vocab, (2, 8), generator=torch.Generator().manual_seed(0)))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 8, TINY_GQA.vocab)
    out.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
