"""Compute on the target GPU: user models, workload files, measured times, the fast trace,
the calibrated estimate and its cross-validated error, provenance in rows."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradwire.errors import ConfigError, ScenarioError
from gradwire.models import get_model, profile_model
from gradwire.models.calibrate import calibrate, fit, load_reference
from gradwire.models.devices import get_device, list_devices
from gradwire.models.estimate import estimate_step, resolve_precision, shipped_efficiencies
from gradwire.models.flops import BACKWARD, FORWARD, trace_spec
from gradwire.models.spec import ModelSpec
from gradwire.models.usermodel import user_model
from gradwire.models.workload_file import (
    FORMAT_VERSION,
    parse_workload_document,
    read_workload_file,
    workload_document,
    write_workload_file,
)
from gradwire.pipeline import evaluate_point, prepare, workload_key
from gradwire.scenarios.loader import expand, load_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(ROOT))  # the runnable example: examples.my_model


def _scenario(model: dict, **extra: object) -> dict:
    return {"name": "t", "model": model, "workers": 2, "codecs": ["fp32"],
            "cluster": {"topology": "star", "bandwidth_Gbps": 10}, **extra}  # fmt: skip


# ------------------------------------------------------------------ user models


def test_user_model_by_import_path_runs_end_to_end() -> None:
    sc = load_scenario(_scenario({"module": "examples.my_model:factory", "batch_size": 4,
                                  "profile_iters": 1}))  # fmt: skip
    pts = expand(sc)
    prep = prepare(sc, points=pts, progress=False)
    rows, _ = evaluate_point(pts[0], prep)
    wl = prep.workloads[workload_key(sc)]
    assert rows[0].model == "examples.my_model:factory"
    # the first layer's gradients come last
    assert set(wl.names[-2:]) == {"features.0.weight", "features.0.bias"}
    assert rows[0].compute_source.startswith("measured here")
    assert rows[0].iteration_s >= wl.forward_s + wl.backward_s + wl.optimizer_s


def _write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    name = f"usermods_{abs(hash(body)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return name


@pytest.mark.parametrize(
    ("body", "attr", "message"),
    [
        ("", "missing", "has no attribute 'missing'"),
        ("raise ImportError('no torchvision here')\n", "f", "cannot be imported: ImportError"),
        ("def f():\n    return 3, None\n", "f", "returned no torch.nn.Module"),
        ("import torch\ndef f():\n    return torch.nn.Linear(2, 2), 5\n", "f", "make_batch is not callable"),
        ("import torch\ndef bad(b):\n    raise RuntimeError('disk full')\n"
         "def f():\n    return torch.nn.Linear(2, 2), bad\n", "f", "make_batch(1) raised RuntimeError"),
        ("import torch\ndef f():\n    return torch.nn.Linear(2, 2), lambda b: torch.zeros(b, 2)\n",
         "f", "must return (inputs, targets)"),
    ],
)  # fmt: skip
def test_broken_user_models_get_one_error_naming_model_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, attr: str, message: str
) -> None:
    mod = _write_module(tmp_path, monkeypatch, body)
    with pytest.raises(ConfigError, match=r"model\.module") as err:
        user_model(f"{mod}:{attr}")
    assert message in str(err.value)


def test_malformed_module_path_and_failing_forward_name_model_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ScenarioError, match=r"model\.module: .*package\.module:factory"):
        load_scenario(_scenario({"module": "not a path"}))
    mod = _write_module(tmp_path, monkeypatch, """
        import torch
        def f():
            return torch.nn.Linear(3, 2), lambda b: (torch.zeros(b, 5), torch.zeros(b, dtype=torch.long))
    """)  # fmt: skip
    sc = load_scenario(_scenario({"module": f"{mod}:f", "batch_size": 2, "target_device": "A100"}))
    with pytest.raises(ConfigError, match=r"model\.module: .*training step failed"):
        prepare(sc, progress=False)


def test_zoo_models_keep_the_user_model_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _write_module(tmp_path, monkeypatch, """
        from gradwire.models import get_model
        factory = get_model("small_cnn").as_factory()
    """)  # fmt: skip
    user = user_model(f"{mod}:factory")
    a, b = trace_spec(user, 3), trace_spec(get_model("small_cnn"), 3)
    assert a.params == b.params and np.array_equal(a.flops, b.flops)
    x, y = user.make_batch(3, generator=torch.Generator().manual_seed(1))
    assert x.shape == (3, 1, 28, 28) and y.shape == (3,)


def test_mse_loss_and_sequence_outputs() -> None:
    spec = get_model("mlp")
    out = torch.tensor([[1.0, 2.0]])
    mse = ModelSpec(**{**spec.__dict__, "loss_kind": "mse"})
    assert float(mse.loss(out, torch.tensor([[0.0, 0.0]]))) == pytest.approx(2.5)
    seq = torch.randn(2, 3, 4)
    tgt = torch.randint(0, 4, (2, 3))
    flat = nn.functional.cross_entropy(seq.reshape(6, 4), tgt.reshape(6))
    assert float(spec.loss(seq, tgt)) == pytest.approx(float(flat))


# ------------------------------------------------------------------ workload files


def _profile_scenario(model: dict) -> tuple[object, object]:
    sc = load_scenario(_scenario(model))
    pts = expand(sc)
    return sc, pts


def test_profile_file_written_on_cpu_gives_the_same_rows_as_in_process(tmp_path: Path) -> None:
    from gradwire.cli import main

    out = tmp_path / "w.json"
    assert main(["profile", "small_cnn", "--out", str(out), "--batch", "4", "--device", "cpu",
                 "--warmup", "0", "--iters", "2"]) == 0  # fmt: skip
    f = read_workload_file(out)
    assert f.provenance["device"] == "cpu" and f.provenance["torch_version"] == torch.__version__
    assert f.batch_size == 4 and f.model == "small_cnn"

    sc_file = load_scenario(_scenario({"name": "small_cnn", "batch_size": 4, "profile": str(out),
                                       "target_device": "A100"}))  # fmt: skip
    sc_here = load_scenario(_scenario({"name": "small_cnn", "batch_size": 4, "profile_iters": 1,
                                       "measured": {"forward_ms": f.forward_s * 1e3,
                                                    "backward_ms": f.backward_s * 1e3,
                                                    "optimizer_ms": f.optimizer_s * 1e3}}))  # fmt: skip
    p_file, p_here = prepare(sc_file, progress=False), prepare(sc_here, progress=False)
    a, b = p_file.workloads[workload_key(sc_file)], p_here.workloads[workload_key(sc_here)]
    assert (a.forward_s, a.backward_s, a.optimizer_s) == (f.forward_s, f.backward_s, f.optimizer_s)
    assert a.ready_s == tuple(p.ready_s for p in f.params) and a.names == b.names
    assert a.compute_source.startswith("measured file (") and a.target_device == "A100"

    # The same profile in process: rows identical field by field (same codec costs).
    wl = profile_model("small_cnn", 4, device="cpu", warmup=0, iters=2, cache=False)
    doc = workload_document(wl)
    g = parse_workload_document(json.loads(json.dumps(doc)))
    assert [(p.name, p.shape, p.ready_s) for p in g.params] == \
        [(p.name, p.shape, p.ready_s) for p in wl.params]  # fmt: skip
    assert (g.forward_s, g.backward_s, g.optimizer_s) == (wl.forward_s, wl.backward_s, wl.optimizer_s)
    out2 = tmp_path / "w2.json"
    write_workload_file(wl, out2)
    sc2 = load_scenario(_scenario({"name": "small_cnn", "batch_size": 4, "profile": str(out2)}))
    p2 = prepare(sc2, progress=False)
    s2 = p2.workloads[workload_key(sc2)]
    assert (s2.forward_s, s2.backward_s, s2.optimizer_s) == (wl.forward_s, wl.backward_s, wl.optimizer_s)
    assert s2.ready_s == tuple(p.ready_s for p in wl.params)
    pts = expand(sc2)
    rows_file, _ = evaluate_point(pts[0], p2)
    assert rows_file[0].compute_s == pytest.approx(wl.compute_s, rel=1e-12)


def test_profile_files_with_missing_fields_or_newer_versions_are_refused(tmp_path: Path) -> None:
    wl = profile_model("mlp", 2, device="cpu", warmup=0, iters=1, cache=False, keep_gradients=False)
    doc = workload_document(wl)
    newer = {**doc, "format_version": FORMAT_VERSION + 1}
    with pytest.raises(ConfigError, match=r"model\.profile: .*format version 2, newer"):
        parse_workload_document(newer)
    no_times = {**doc, "times": {"forward_s": 0.1}}
    with pytest.raises(ConfigError, match=r"model\.profile: .*lacks times\.backward_s, times\.optimizer_s"):
        parse_workload_document(no_times)
    no_prov = {**doc, "provenance": {"device": "cpu"}}
    with pytest.raises(ConfigError, match=r"lacks provenance\.device_name"):
        parse_workload_document(no_prov)
    with pytest.raises(ConfigError, match="not a GradWire workload file"):
        parse_workload_document({"params": []})
    with pytest.raises(ScenarioError, match=r"model\.profile: no file"):
        load_scenario(_scenario({"name": "mlp", "profile": str(tmp_path / "none.json")}))


def test_profile_file_for_another_batch_is_an_error(tmp_path: Path) -> None:
    wl = profile_model("mlp", 2, device="cpu", warmup=0, iters=1, cache=False, keep_gradients=False)
    path = write_workload_file(wl, tmp_path / "w.json")
    sc = load_scenario(_scenario({"name": "mlp", "batch_size": 8, "profile": str(path)}))
    with pytest.raises(ConfigError, match=r"model\.batch_size: 8 differs .* \(2\)"):
        prepare(sc, progress=False)


# ------------------------------------------------------------------ measured times honoured


def test_measured_times_with_a_target_device_are_exactly_the_compute() -> None:
    sc = load_scenario(_scenario({"name": "mlp", "batch_size": 4, "target_device": "A100",
                                  "profile_iters": 1, "measured": {"forward_ms": 3.0,
                                  "backward_ms": 5.0, "optimizer_ms": 1.0}}))  # fmt: skip
    pts = expand(sc)
    prep = prepare(sc, points=pts, progress=False)
    wl = prep.workloads[workload_key(sc)]
    assert (wl.forward_s, wl.backward_s, wl.optimizer_s) == (0.003, 0.005, 0.001)
    assert max(wl.ready_s) <= 0.005 and not wl.estimate
    rows, _ = evaluate_point(pts[0], prep)
    assert rows[0].compute_s == pytest.approx(0.009, rel=1e-12)
    assert rows[0].compute_source == "given in the scenario (model.measured)"
    assert rows[0].target_device == "A100"


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ({"efficiency": {"gemm": 0.5, "small_gemm": 0.5, "memory": 0.5, "optimizer": 0.5}}, "model.efficiency"),
        ({"target_device": "A100", "measured": {"forward_ms": 1, "backward_ms": 1},
          "efficiency": {"gemm": 0.5, "small_gemm": 0.5, "memory": 0.5, "optimizer": 0.5}}, "model.efficiency"),
        ({"measured": {"forward_ms": 1, "backward_ms": 1}, "precision": "tf32"}, "model.precision"),
        ({"target_device": "V100", "precision": "amp_bf16"}, "model.precision"),
        ({"target_device": "V100", "precision": "tf32"}, "model.precision"),
        ({"loss": "mse"}, "model.loss"),
        ({"module": "examples.my_model:factory", "name": "resnet50"}, "model.name"),
    ],
)  # fmt: skip
def test_settings_that_would_be_ignored_are_errors(model: dict, path: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(_scenario(model))
    assert path in {p.path for p in err.value.problems}


# ------------------------------------------------------------------ the fast trace


def _tiny_transformer_spec(tied: bool = True) -> ModelSpec:
    vocab, d = 50, 16

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.block = nn.TransformerEncoderLayer(d, 2, 32, 0.0, batch_first=True)
            self.out = None if tied else nn.Linear(d, vocab, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.block(self.emb(x))
            return h @ self.emb.weight.t() if self.out is None else self.out(h)

    def batch(b: int, g: torch.Generator, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, vocab, (b, 6), generator=g)
        return x.to(dev), torch.randint(0, vocab, (b, 6), generator=g).to(dev)

    return ModelSpec(name="tiny_tf", description="", published_params=0, source="test",
                     input_kind="custom", data_source="", builder=Tiny, batch_fn=batch)  # fmt: skip


@pytest.mark.parametrize("which", ["small_cnn", "mlp", "tiny_transformer"])
def test_fast_pass_matches_the_real_parameter_list_and_order(which: str) -> None:
    spec = _tiny_transformer_spec() if which == "tiny_transformer" else get_model(which)
    real = profile_model(spec, 3, device="cpu", warmup=0, iters=1, cache=False, keep_gradients=False)
    tr = trace_spec(spec, 3)
    assert [(n, s) for n, s in tr.params] == [(p.name, p.shape) for p in real.params]


def test_flops_match_a_hand_count_for_a_small_conv_net() -> None:
    tr = trace_spec(get_model("small_cnn"), 5)
    b = 5
    # conv5x5(1->16) on 28x28 (padding 2), pool, conv5x5(16->32) on 14x14, pool, linear 32*7*7->10
    conv1 = 2 * 16 * 1 * 25 * 28 * 28 * b
    conv2 = 2 * 32 * 16 * 25 * 14 * 14 * b
    fc = 2 * 32 * 7 * 7 * 10 * b
    assert tr.total_flops(FORWARD) == conv1 + conv2 + fc
    # backward: weight gradients of all three, input gradients of all but the first layer
    assert tr.total_flops(BACKWARD) == conv1 + 2 * conv2 + 2 * fc


def test_flops_match_a_hand_count_for_a_transformer_block() -> None:
    spec = _tiny_transformer_spec()
    b, t, d, ff, vocab = 4, 6, 16, 32, 50
    tr = trace_spec(spec, b)
    proj = 4 * 2 * b * t * d * d  # q, k, v, output projections
    attn = 2 * 2 * b * t * t * d  # scores and weighted values
    mlp = 2 * 2 * b * t * d * ff
    logits = 2 * b * t * d * vocab
    assert tr.total_flops(FORWARD) == proj + attn + mlp + logits


def test_backward_order_and_the_tied_embedding_is_ready_at_the_end_of_backward() -> None:
    tr = trace_spec(get_model("gpt2_small"), 2)
    assert tr.params[-1][0] == "wte.weight"
    est = estimate_step(tr, "A100", "amp_bf16")
    ready = np.array(est.ready_s)
    assert np.all(np.diff(ready) >= 0)
    assert ready[-1] == est.backward_s
    # the input embedding's backward is the last work of backward: nothing of it is free
    assert ready[-2] < ready[-1]


def test_precisions_use_their_peaks() -> None:
    tr = trace_spec(get_model("resnet50"), 16)
    times = {p: estimate_step(tr, "A100", p) for p in (None, "fp32", "tf32", "amp_fp16")}
    total = {p: e.forward_s + e.backward_s for p, e in times.items()}
    # ResNet-50 is convolutions: PyTorch's default (TF32 convolutions) runs it as TF32 does
    assert total["fp32"] > total[None] == pytest.approx(total["tf32"], rel=1e-3)
    assert total["tf32"] > total["amp_fp16"]
    gpt = trace_spec(get_model("gpt2_small"), 2)
    g = {p: estimate_step(gpt, "A100", p) for p in (None, "fp32", "tf32")}
    assert g["fp32"].forward_s == g[None].forward_s > g["tf32"].forward_s  # FP32 matmuls
    assert "TF32 convolutions" in times[None].precision
    assert resolve_precision(get_device("V100"), None).conv_peak == "float32"
    with pytest.raises(ConfigError, match=r"V100 has no amp_bf16"):
        resolve_precision(get_device("V100"), "amp_bf16")


def test_device_profiles_state_precision_peaks_in_order() -> None:
    for name in list_devices():
        peaks = get_device(name).peak_flops
        chain = [peaks[k] for k in ("float32", "tf32", "float16", "fp8") if k in peaks]
        assert chain == sorted(chain), name
        assert get_device(name).source
    assert "fp8" in get_device("H100").peak_flops and "fp8" not in get_device("A100").peak_flops


# ------------------------------------------------------------------ calibration


def test_cross_validated_error_is_what_the_estimate_states() -> None:
    cal = calibrate()
    stated = shipped_efficiencies()
    held = np.abs(cal.heldout_error)
    # The threshold is the held-out error of the shipped fit, recomputed here from the data.
    assert float(np.median(held)) == pytest.approx(stated.error_median, rel=1e-9)
    assert float(held.max()) == pytest.approx(stated.error_max, rel=1e-9)
    x = cal.multipliers
    assert np.allclose(x, stated.multipliers(), rtol=1e-9, atol=1e-15)
    assert f"±{100 * stated.error_median:.0f}%" in stated.stated()
    assert len(cal.rows) == 33 and len(cal.skipped) == 4
    # a GPU and precision with published rows states their own held-out error
    a100 = next(t for t in cal.table() if t["gpu"] == "A100-80GB" and t["precision"] == "tf32")
    text = stated.stated("A100", "tf32")
    assert f"±{100 * float(a100['median_abs_error']):.0f}% median" in text  # type: ignore[arg-type]
    assert f"{a100['rows']} published A100 tf32" in text


def test_held_out_predictions_never_see_their_own_model() -> None:
    # Changing a model's published throughputs must leave its held-out predictions unchanged
    # (and change the others' only through the fit).
    rows, _ = load_reference()
    from gradwire.models.calibrate import design

    a = design(rows)
    step = np.array([r.step_s for r in rows])
    test = np.array([r.family == "GNMT v2" for r in rows])
    pred = a[test] @ fit(a[~test], step[~test])
    step2 = step.copy()
    step2[test] *= 3.0
    pred2 = a[test] @ fit(a[~test], step2[~test])
    assert np.array_equal(pred, pred2)
    assert not math.isclose(float(np.median(pred / step[test])), float(np.median(pred2 / step2[test])))


# ------------------------------------------------------------------ provenance


def test_rows_store_and_dashboard_name_the_sources(tmp_path: Path) -> None:
    from gradwire.report.dashboard import build_dashboard
    from gradwire.sweep.store import ResultStore

    sc = load_scenario(_scenario({"name": "mlp", "batch_size": 4, "target_device": "H100",
                                  "precision": "amp_bf16"}))  # fmt: skip
    pts = expand(sc)
    rows, traces = evaluate_point(pts[0], prepare(sc, points=pts, progress=False))
    stated = shipped_efficiencies().stated("H100", "amp_bf16")
    assert "no published H100 amp_bf16 rows" in stated  # no H100 data: the all-rows error
    for r in rows:
        assert r.estimate and r.target_device == "H100" and r.precision == "amp_bf16"
        assert r.compute_source == stated and "±" in r.compute_source
        assert r.efficiency_source.startswith("fitted on published single-GPU throughputs")
        assert r.codec_source and r.network_source.startswith("estimate")
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(pts[0].point_id, rows, traces)
        back = store.rows()
    assert [(r.target_device, r.precision, r.compute_source, r.codec_source) for r in back] == \
        [(r.target_device, r.precision, r.compute_source, r.codec_source) for r in rows]  # fmt: skip
    html = build_dashboard(rows, traces)
    for text in ("target: H100", "precision: amp_bf16", f"compute: {stated}", "network: estimate"):
        assert text in html
