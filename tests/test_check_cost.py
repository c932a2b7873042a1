"""What a run will cost, said before it runs: cached profiles are recognised and labelled.

A cached profile is read, not measured, so the log line of a run that reuses one says
"(cached)"; :func:`gradwire.models.profile.profile_is_cached` answers without running
anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gradwire.models import profile as prof
from gradwire.models.sources import prepare_workload
from gradwire.scenarios.loader import load_scenario


def _scenario(**model: object) -> object:
    return load_scenario({"model": {"name": "mlp", "batch_size": 4, **model}, "workers": 2,
                          "codecs": ["fp32"], "cluster": {"bandwidth_Gbps": 10}})


@pytest.mark.parametrize("model", [{}, {"target_device": "V100"}], ids=["measured here", "estimated"])
def test_cached_profile_says_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    model: dict[str, object]) -> None:
    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    sc = _scenario(**model)
    cold: list[str] = []
    prepare_workload(sc, "cpu", say=cold.append)
    warm: list[str] = []
    prepare_workload(sc, "cpu", say=warm.append)
    assert len(cold) == len(warm) == 1
    assert not cold[0].endswith("(cached)")
    assert warm[0] == cold[0] + " (cached)"


def test_profile_is_cached_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {"device": "cpu", "iters": 1, "cache_dir": tmp_path}
    assert not prof.profile_is_cached("small_cnn", 4, **kw)
    prof.profile_model("small_cnn", 4, **kw)

    def no_running(*args: object, **kwargs: object) -> None:
        raise AssertionError("asking whether a profile is cached must not run the model")

    monkeypatch.setattr(prof, "_measure", no_running)
    monkeypatch.setattr(prof, "_meta_costs", no_running)
    assert prof.profile_is_cached("small_cnn", 4, **kw)
    # any setting in the key is another profile
    assert not prof.profile_is_cached("small_cnn", 4, **{**kw, "iters": 2})
    assert not prof.profile_is_cached("small_cnn", 8, **kw)


def _points(model: str, batch: int, **extra: object) -> list[object]:
    from gradwire.scenarios.loader import expand

    return expand(load_scenario({"model": {"name": model, "batch_size": batch}, "workers": 4,
                                 "codecs": ["fp32", "qsgd(bits=4, bucket=512)"],
                                 "cluster": {"bandwidth_Gbps": 10}, **extra}))


def test_estimate_runs_no_model_and_counts_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradwire.cost_estimate import estimate_cost

    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))

    def no_running(*args: object, **kwargs: object) -> None:
        raise AssertionError("the estimate must not run the model")

    monkeypatch.setattr(prof, "_measure", no_running)
    b = 8
    est = estimate_cost(_points("mlp", b, sweep={"workers": [2, 8]}))
    assert not list(tmp_path.rglob("profile.json"))  # nothing was profiled or cached
    (w,) = est.workloads
    n = 784 * 4096 + 4096 + 4096 * 10 + 10
    assert w.params == n and not w.cached
    # the MLP's FLOPs: forward 2bn-ish matmuls, backward twice that (weights and hidden input)
    assert w.step_flops == pytest.approx(2 * b * (784 * 4096 + 4096 * 10) * 3 - 2 * b * 784 * 4096, rel=0.01)
    # the default profile: one warm-up and three timed steps, unless the 30 s budget cuts it
    assert w.profile_steps == 4 and w.profile_s == pytest.approx(4 * w.step_s)
    # parameters, gradients, momentum and the float32 gradient copies, the input, and at
    # least the input and hidden activations saved for backward
    assert w.memory_bytes >= 16 * n + 4 * b * 784 + 4 * b * (784 + 4096)
    assert est.points == 2 and est.simulations == 2 * 2 * (1 + 100)  # each codec, and per verdict draw
    assert est.seconds == pytest.approx(w.profile_s + w.codec_s + est.simulation_s)


def test_cached_profile_is_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradwire.cost_estimate import estimate_cost

    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    points = _points("mlp", 4)
    assert not estimate_cost(points).workloads[0].cached
    prepare_workload(points[0].scenario, "cpu")  # what a run profiles
    (w,) = estimate_cost(points).workloads
    assert w.cached and w.profile_steps == 0 and w.profile_s == 0.0


def test_estimate_orders_a_measured_tiny_pair(tmp_path: Path) -> None:
    """Measured here (2-core CPU, shared): one cold step of the MLP at batch 8 took
    0.25-0.5 s (most of it fixed set-up), of small_cnn at batch 1024 about 1.7 s; the MLP
    has 112x the parameters, small_cnn 160x the FLOPs. The estimate must follow the work,
    not the parameter count."""
    import time

    from gradwire.cost_estimate import host_rates, step_seconds
    from gradwire.models.flops import trace_spec
    from gradwire.models.spec import get_model

    pair = [("mlp", 8), ("small_cnn", 1024)]
    measured, estimated = [], []
    for name, b in pair:
        estimated.append(step_seconds(trace_spec(get_model(name), b), host_rates("cpu")))
        t0 = time.perf_counter()
        prof.profile_model(name, b, device="cpu", warmup=0, iters=1, cache=False, keep_gradients=False)
        measured.append(time.perf_counter() - t0)
    assert sorted(range(2), key=measured.__getitem__) == sorted(range(2), key=estimated.__getitem__)


def test_check_prints_the_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from gradwire.cli import main

    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "mlp", "batch_size": 4}, "workers": 2,
                                    "codecs": ["fp32"], "cluster": {"bandwidth_Gbps": 10}}))
    assert main([str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "Estimated cost of the run (nothing run; basis: cpu probes:" in out
    assert "mlp batch 4: 3.3M parameters" in out and "memory ~" in out


def test_simulation_is_probed_once_per_structure_not_per_rate() -> None:
    """A bandwidth sweep changes rates only: one probe per kind of exchange (fp32 in place,
    an encoded payload), and every point of the sweep is priced alike."""
    from gradwire.cost_estimate import SimProbe
    from gradwire.models.flops import trace_spec
    from gradwire.models.sources import scenario_spec

    points = _points("mlp", 4, sweep={"cluster.bandwidth_Gbps": [1, 10, 100]})
    sc0 = points[0].scenario
    trace = trace_spec(scenario_spec(sc0.model), 4, seed=0)
    names = [n for n, _ in trace.params]
    numels = [math.prod(s) for _, s in trace.params]
    probe = SimProbe()
    priced = {(pt.index, spec): probe.seconds(pt.scenario, spec, names, numels)
              for pt in points for spec in pt.scenario.codecs}
    assert len(probe._cache) == 2 and probe.extrapolated == 0
    for spec in sc0.codecs:
        assert len({priced[(pt.index, spec)] for pt in points}) == 1
        assert priced[(0, spec)] > 0


@pytest.mark.parametrize(("power", "slope"), [(1.0, 1.0), (0.8, 0.8), (3.0, 1.5), (0.1, 0.5)])
def test_large_points_extrapolate_the_measured_slope_clamped(monkeypatch: pytest.MonkeyPatch,
                                                             power: float, slope: float) -> None:
    from gradwire.cost_estimate import SIM_PROBE_LOW_RANKS, SIM_PROBE_MAX_RANKS, SimProbe

    probed: list[int] = []

    def fake(self: object, sc: object, spec: str, names: object, numels: object, p: int) -> tuple[float, float]:
        probed.append(p)
        return 3e-3 * p**power, 1e-3 * p**power  # a first iteration (route look-ups), a repeated one

    monkeypatch.setattr(SimProbe, "_probe", fake)
    sc = load_scenario({"model": {"name": "mlp", "batch_size": 4}, "workers": 4096, "codecs": ["fp32"],
                        "cluster": {"topology": "servers", "gpus_per_server": 8, "nic_bandwidth_Gbps": 100,
                                    "intra_bandwidth_Gbps": 2400, "fabric": "fat_tree"}})
    probe = SimProbe()
    got = probe.seconds(sc, "fp32", [], [], runs=20)  # one first iteration and 19 repeats
    assert sorted(probed) == [SIM_PROBE_LOW_RANKS, SIM_PROBE_MAX_RANKS]
    assert got == pytest.approx((3 + 19) * 1e-3 * SIM_PROBE_MAX_RANKS**power * (4096 / SIM_PROBE_MAX_RANKS) ** slope)
    assert probe.extrapolated == 1
    probed.clear()
    small = load_scenario({"model": {"name": "mlp", "batch_size": 4}, "workers": 96, "codecs": ["fp32"],
                           "cluster": {"bandwidth_Gbps": 10}})
    assert SimProbe().seconds(small, "fp32", [], []) == pytest.approx(3e-3 * 96**power)
    assert probed == [96]  # at most SIM_PROBE_MAX_RANKS ranks: simulated as it is
