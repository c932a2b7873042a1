"""The codec cost model: scaling laws, the fit (exact recovery, refusal, host held-out
error), calibration files and their refusal cases, host-measurement cache, determinism."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gradwire.codecs import CODECS, make_codec
from gradwire.codecs.calibrate import (
    DEFAULT_CODECS,
    FORMAT_VERSION,
    CalibrationError,
    Measurement,
    calibration_document,
    check_device,
    device_name,
    fit,
    load_calibration,
    matrix_shape,
    measure_series,
    write_calibration,
)
from gradwire.codecs.cost import (
    CONSTANT_NAMES,
    DeviceConstants,
    codec_seconds,
    gpu_defaults,
)
from gradwire.codecs.host_cache import HostLoadWarning, measure_cached
from gradwire.errors import ConfigError, ScenarioError


def only(**kw: float) -> DeviceConstants:
    """Constants that price one kind of work (1 s per unit) and nothing else."""
    vals = dict.fromkeys(CONSTANT_NAMES, 0.0)
    vals.update(kw)
    return DeviceConstants(**vals)


ALL_SPECS = [*DEFAULT_CODECS, "fp32"]


# --------------------------------------------------------------------------- scaling laws
@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if not s.startswith("powersgd")])
def test_streaming_time_is_linear_in_elements(spec: str) -> None:
    # elementwise codecs on whole buckets above min_numel: equal steps in n add equal
    # streaming time (an affine law: a per-tensor scale is a constant term)
    codec = make_codec(spec)
    n = 512 * 64
    c = only(byte_s=1.0)
    t1, t2, t3 = (codec_seconds(codec, [(k * n,)], c) for k in (1, 2, 3))
    if spec.startswith("topk"):  # k is a ceiling: the sizes are exact multiples
        assert codec.k_for(3 * n) == 3 * codec.k_for(n)
    for a, b, d in zip(t1, t2, t3, strict=True):
        assert d - b == pytest.approx(b - a, rel=1e-12)
        assert (b - a > 0) == (spec != "fp32")


def test_qsgd_bytes_match_the_wire_format_closed_form() -> None:
    # 4-bit fixed QSGD: norm pass (4 B read), quantize pass (4 B read + the wire), wire =
    # 4 bytes per bucket + 4 bits per element; decode reads the wire and writes fp32.
    n = 512 * 100
    w = make_codec("qsgd(bits=4, bucket=512)").work((n,))
    wire = 4 * (n // 512) + n * 4 / 8
    assert w.encode.bytes == 8 * n + wire
    assert w.decode.bytes == wire + 4 * n
    assert w.encode.rng == n and w.encode.pack == n and w.encode.select == 0


@pytest.mark.parametrize("spec", ["fp16", "qsgd(bits=4, bucket=512)", "onebit", "topk(ratio=0.01)",
                                  "powersgd(rank=4)", "terngrad"])
def test_launch_and_call_costs_grow_with_the_number_of_tensors(spec: str) -> None:
    codec = make_codec(spec)
    shape = (300, 400)
    c = only(launch_s=1e-6, call_s=1e-5)
    one = codec_seconds(codec, [shape], c)
    assert one[0] > 0 and one[1] > 0
    for t in (2, 7):
        many = codec_seconds(codec, [shape] * t, c)
        assert many == pytest.approx((t * one[0], t * one[1]), rel=1e-12)
    # a stated per-tensor overhead adds exactly t * overhead to each direction
    base = codec_seconds(codec, [shape] * 5, c)
    more = codec_seconds(codec, [shape] * 5, c, per_tensor_overhead_s=40e-6)
    assert more[0] - base[0] == pytest.approx(5 * 40e-6) and more[1] - base[1] == pytest.approx(5 * 40e-6)


def test_topk_selection_is_not_a_streaming_pass() -> None:
    codec, n = make_codec("topk(ratio=0.01)"), 10**6
    k = codec.k_for(n)
    w = codec.work((n,))
    assert w.encode.select == n + k
    # the selection's time does not depend on memory bandwidth ...
    sel = codec_seconds(codec, [(n,)], only(select_s=1.0))[0]
    assert sel == n + k
    # ... and sending twice as many entries adds only k-proportional bytes (no pass of n)
    w2 = make_codec("topk(ratio=0.02)").work((n,))
    assert w2.encode.bytes - w.encode.bytes == 64 * (make_codec("topk(ratio=0.02)").k_for(n) - k)


def test_identity_costs_nothing_and_a_cast_is_one_pass() -> None:
    rich = gpu_defaults("H100")
    assert codec_seconds(make_codec("fp32"), [(1000, 1000), (10,)], rich) == (0.0, 0.0)
    for spec, wire in (("fp16", 2), ("bf16", 2)):
        w = make_codec(spec).work((10**6,))
        assert w.decode.bytes == 10**6 * (wire + 4)  # one pass: read wire, write fp32
        assert w.decode.launches == 1


def test_every_registered_codec_declares_its_work() -> None:
    for name in CODECS.names():
        w = make_codec(name).work((256, 256))
        for direction in (w.encode, w.decode):
            assert all(v >= 0 and math.isfinite(v) for v in direction.vector())


def test_gpu_defaults_follow_the_device_profile() -> None:
    from gradwire.models.devices import get_device

    for name in ("V100", "H200"):
        c = gpu_defaults(name, memory_efficiency=0.5)
        assert c.bandwidth_Bps == pytest.approx(0.5 * get_device(name).memory_bandwidth_Bps)
    # a faster memory makes every streaming codec cheaper
    slow = codec_seconds(make_codec("qsgd(bits=4)"), [(4096, 4096)], gpu_defaults("V100"))
    fast = codec_seconds(make_codec("qsgd(bits=4)"), [(4096, 4096)], gpu_defaults("H200"))
    assert fast[0] < slow[0] and fast[1] < slow[1]


def test_device_constants_refuse_negative_values() -> None:
    with pytest.raises(ConfigError, match="byte_s"):
        only(byte_s=-1.0)


# --------------------------------------------------------------------------- the fit
def _synthetic(constants: DeviceConstants, specs: list[str], noise: float = 0.0,
               seed: int = 0) -> list[Measurement]:
    """Timings generated by the model itself (an exact oracle for the fit)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for spec in specs:
        codec = make_codec(spec)
        for n, held in [(10**k, False) for k in range(3, 8)] + [(3 * 10**k, True) for k in range(3, 7)]:
            shape = matrix_shape(n)
            for count in (1, 8) if n <= 10**5 else (1,):
                w = codec.work(shape)
                for direction, work in (("encode", w.encode), ("decode", w.decode)):
                    t = constants.seconds(work.scaled(count))
                    t *= 1 + noise * float(torch.randn(1, generator=gen))
                    out.append(Measurement(codec.spec(), direction, shape, count, t, 0.0, held))
    return out


TRUE = DeviceConstants(byte_s=1 / 20e9, launch_s=4e-6, call_s=15e-6, rng_s=2e-9, select_s=9e-9,
                       pack_s=1.5e-9, varlen_s=4e-9, reduce_s=0.3e-9, flop_s=1 / 50e9)


def test_fit_recovers_timings_made_by_the_model() -> None:
    ms = _synthetic(TRUE, list(DEFAULT_CODECS))
    res = fit(ms)
    assert res.fit_error < 1e-6
    assert res.median_held_out_error < 1e-6
    assert max(res.codec_errors.values()) < 1e-6


def test_fit_refuses_timings_that_fall_as_work_grows() -> None:
    ms = _synthetic(TRUE, list(DEFAULT_CODECS))
    inverted = [replace(m, seconds=1.0 / m.numel) for m in ms]
    with pytest.raises(CalibrationError, match="cannot explain"):
        fit(inverted)
    with pytest.raises(CalibrationError, match="positive finite"):
        fit([replace(ms[0], seconds=0.0), *ms[1:]])
    with pytest.raises(CalibrationError, match="cannot determine"):
        fit(ms[:3])


@pytest.mark.slow
def test_host_fit_predicts_held_out_sizes_within_15_percent() -> None:
    # Fitted on 1e3, 1e4, 1e5, 1e6 elements; judged on 3e3, 3e4, 3e5 (never fitted).
    ms = measure_series(DEFAULT_CODECS, device="cpu", max_numel=10**6, repeats=5, threads=1)
    res = fit(ms)
    assert res.constants.byte_s > 0
    assert res.median_held_out_error <= 0.15, res.held_out


# --------------------------------------------------------------------------- files
def _file(tmp_path: Path, **change: object) -> Path:
    ms = _synthetic(TRUE, ["fp16", "qsgd(bits=4)", "topk(ratio=0.01)", "onebit", "powersgd(rank=4)",
                           "signsgd", "qsgd(bits=4, encoding='elias')", "terngrad"])
    doc = calibration_document(fit(ms), ms, device="cpu", max_numel=10**7, repeats=1, threads=1)
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    return write_calibration(doc, tmp_path / "costs.json")


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    cal = load_calibration(_file(tmp_path))
    assert cal.kind == "cpu" and cal.device_name == device_name("cpu")
    assert cal.constants.vector() == pytest.approx(fit(_synthetic(TRUE, [
        "fp16", "qsgd(bits=4)", "topk(ratio=0.01)", "onebit", "powersgd(rank=4)", "signsgd",
        "qsgd(bits=4, encoding='elias')", "terngrad"])).constants.vector())
    doc = json.loads((tmp_path / "costs.json").read_text())
    assert doc["format_version"] == FORMAT_VERSION and doc["versions"]["torch"] == torch.__version__
    check_device(cal, target_device=None, host_device="cpu")  # this host: accepted


@pytest.mark.parametrize(("change", "message"), [
    ({"constants": None}, "lacks constants"),
    ({"date": None}, "lacks date"),
    ({"constants": {"byte_s": 1e-10}}, "lacks constants.launch_s"),
    ({"format_version": FORMAT_VERSION + 1}, "format_version"),
    ({"format": "something else"}, "not a GradWire codec calibration"),
])
def test_bad_calibration_files_are_refused_with_one_message(tmp_path: Path, change: dict[str, object],
                                                            message: str) -> None:
    path = _file(tmp_path, **change)
    with pytest.raises(CalibrationError, match=message):
        load_calibration(path)


def test_calibration_from_another_device_is_refused(tmp_path: Path) -> None:
    cal = load_calibration(_file(tmp_path))
    with pytest.raises(CalibrationError, match="target_device is 'H200'"):
        check_device(cal, target_device="H200", host_device="cpu")
    other = _file(tmp_path, device={"kind": "cpu", "name": "Some Other CPU", "profile": None})
    with pytest.raises(CalibrationError, match="Some Other CPU"):
        check_device(load_calibration(other), target_device=None, host_device="cpu")


def test_scenario_with_a_bad_calibration_file_gets_one_problem(tmp_path: Path) -> None:
    from gradwire.scenarios.loader import load_scenario

    path = _file(tmp_path, format_version=99)
    with pytest.raises(ScenarioError) as info:
        load_scenario("quickstart", [f"codec.costs={path}", "model.device=cpu"])
    assert [p.path for p in info.value.problems] == ["codec.costs"]
    with pytest.raises(ScenarioError) as info:
        load_scenario("quickstart", [f"codec.costs={_file(tmp_path)}", "model.target_device=V100"])
    assert [p.path for p in info.value.problems] == ["codec.costs"]
    assert "V100" in str(info.value)
    sc = load_scenario("quickstart", [f"codec.costs={_file(tmp_path)}", "model.device=cpu"])
    assert sc.codec.costs == str(tmp_path / "costs.json")


# --------------------------------------------------------------------------- host cache
def test_host_measurements_are_cached_with_their_spread(tmp_path: Path) -> None:
    codec = make_codec("qsgd(bits=4)")
    xs = [torch.randn(200, 100), torch.randn(50)]
    first = measure_cached(codec, xs, device="cpu", repeats=2, cache_dir=tmp_path)
    second = measure_cached(codec, xs, device="cpu", repeats=2, cache_dir=tmp_path)
    assert not first.cached and second.cached
    assert (first.encode_s, first.decode_s) == (second.encode_s, second.decode_s)
    assert len(first.encode_spread) == 2 and all(s >= 0 for s in first.encode_spread)
    # another shape, another codec or another repeat count is another entry
    third = measure_cached(codec, [torch.randn(200, 101), xs[1]], device="cpu", repeats=2,
                           cache_dir=tmp_path)
    assert not third.cached
    assert not measure_cached(make_codec("qsgd(bits=8)"), xs, device="cpu", repeats=2,
                              cache_dir=tmp_path).cached


def test_a_busy_host_is_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (4.0 * (os.cpu_count() or 1), 0.0, 0.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        measure_cached(make_codec("fp16"), [torch.randn(100)], device="cpu", repeats=1,
                       cache_dir=tmp_path)
    assert any(issubclass(w.category, HostLoadWarning) for w in caught)


# --------------------------------------------------------------------------- pipeline
def _small(extra: list[str]) -> object:
    from gradwire.scenarios.loader import load_scenario

    return load_scenario("quickstart", ["sweep={}", "convergence.enabled=false", "model.device=cpu",
                                        "model.profile_iters=1", "measure.repeats=1",
                                        "codecs=[fp32, 'qsgd(bits=4, bucket=512)', onebit]", *extra])


@pytest.mark.slow
def test_target_device_codec_times_come_from_the_model_not_the_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradwire.models import build_model
    from gradwire.pipeline import prepare

    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    sc = _small(["model.target_device=H200", "codec.per_tensor_overhead_us=50"])
    prep = prepare(sc, progress=False)  # type: ignore[arg-type]
    for (_, spec), prof in prep.codecs.items():
        codec = make_codec(spec)
        if spec == "fp32":  # the identity runs nothing, so it pays no stated overhead either
            assert all(p.encode_s == 0.0 and p.decode_s == 0.0 for p in prof.params)
            continue
        assert prof.codec_source.startswith("model (H200") and prof.estimate
        # per tensor: the declared work on the H200's datasheet constants plus the stated 50 us
        c = gpu_defaults("H200", memory_efficiency=sc.model.memory_efficiency,  # type: ignore[attr-defined]
                         compute_efficiency=sc.model.compute_efficiency)  # type: ignore[attr-defined]
        assert prof.encode_call_s == pytest.approx(c.call_s)
        wl = next(iter(prep.workloads.values()))
        shapes = dict(build_model("mlp").named_parameters())
        for p, name in zip(prof.params, wl.names, strict=True):
            w = codec.work(tuple(shapes[name].shape))
            assert p.encode_s == pytest.approx(c.seconds(w.encode.per_tensor()) + 50e-6)
            assert p.decode_s == pytest.approx(c.seconds(w.decode.per_tensor()) + 50e-6)


@pytest.mark.slow
def test_same_scenario_same_seed_gives_byte_identical_csv_and_resume_uses_one_measurement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradwire.run import run_scenario

    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path / "cache"))
    sc = _small(["convergence.enabled=true", "convergence.steps=10", "convergence.eval_every=5",
                 "convergence.workers=2"])
    run_scenario(sc, tmp_path / "a", progress=False)  # type: ignore[arg-type]
    run_scenario(sc, tmp_path / "b", progress=False)  # type: ignore[arg-type]
    a = (tmp_path / "a" / "results.csv").read_bytes()
    assert a == (tmp_path / "b" / "results.csv").read_bytes()
    # a sweep cut short after its first point, then resumed: every row's codec times come
    # from the one cached measurement, so equal workloads give equal codec times
    first = _small(["sweep={workers: [2]}"])
    both = _small(["sweep={workers: [2, 4]}"])
    run_scenario(first, tmp_path / "r", progress=False)  # type: ignore[arg-type]
    out = run_scenario(both, tmp_path / "r", progress=False)  # type: ignore[arg-type]
    assert out.skipped == 1
    by_codec: dict[str, set[float]] = {}
    for r in out.rows:  # (decode time grows with the payloads a rank receives; encode does not)
        by_codec.setdefault(r.codec, set()).add(r.encode_s)
    assert len(out.rows) == 6 and all(len(v) == 1 for v in by_codec.values()), by_codec


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_gpu_check_script_skips_cleanly_without_cuda(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_check.py"), "--out",
                           str(tmp_path / "g.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "skipped" in proc.stdout
    assert not (tmp_path / "g.json").exists()


@pytest.mark.slow
def test_a_calibration_file_prices_the_codecs_of_a_scenario(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from gradwire.models import build_model
    from gradwire.pipeline import prepare

    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path / "cache"))
    path = _file(tmp_path)  # made for this host; calibrates qsgd(bits=4), onebit among others
    cal = load_calibration(path)
    sc = _small([f"codec.costs={path}"])
    prep = prepare(sc, progress=False)  # type: ignore[arg-type]
    wl = next(iter(prep.workloads.values()))
    shapes = dict(build_model("mlp").named_parameters())
    for (_, spec), prof in prep.codecs.items():
        if spec == "fp32":
            continue
        codec = make_codec(spec)
        assert prof.codec_source.startswith("measured file costs.json") and not prof.estimate
        assert codec.spec() in cal.refine  # the file's per-codec pair is the one applied
        for p, name in zip(prof.params, wl.names, strict=True):
            w = codec.work(tuple(shapes[name].shape))
            assert p.encode_s == pytest.approx(cal.seconds(codec.spec(), "encode", w.encode)[0])
            assert p.decode_s == pytest.approx(cal.seconds(codec.spec(), "decode", w.decode)[0])
        assert prof.encode_call_s == pytest.approx(cal.constants.call_s * cal.refine[codec.spec()]["encode"][1])
