"""GPU data file and roofline rescaling of profiles."""

from __future__ import annotations

import itertools
import math

import pytest

from gradwire.errors import ConfigError, UnknownNameError, WorkloadError
from gradwire.models import LayerCost, ParamInfo, Workload, profile_model
from gradwire.models.devices import get_device, list_devices, rescale, with_measured_times


def test_data_file_covers_the_required_gpus_with_sources() -> None:
    assert {"K80", "P100", "V100", "A100", "H100", "H200"} <= set(list_devices())
    for name in list_devices():
        d = get_device(name)
        assert d.source and d.description
        assert d.peak_flops["float32"] > 1e12 and d.memory_bandwidth_Bps > 1e11
        assert d.memory_bytes > 2**33
        # tensor-core half precision is never slower than FP32
        assert d.peak_flops.get("float16", math.inf) >= d.peak_flops["float32"]
    # generations: bandwidth and FP32 peak grow from K80 to H200
    bws = [
        get_device(n).memory_bandwidth_Bps for n in ("K80", "P100", "V100", "A100", "H100", "H200")
    ]
    assert bws == sorted(bws)


def test_device_lookup_is_case_insensitive_and_unknown_lists_names() -> None:
    assert get_device("a100").name == "A100"
    with pytest.raises(UnknownNameError, match=r"valid devices: .*H100"):
        get_device("B300")


def _toy_workload(dtype: str = "float32") -> Workload:
    # Layer "a" runs first in forward, "b" second; backward produces b's gradients first.
    v100 = get_device("V100")
    peak, bw = v100.peak_flops["float32"], v100.memory_bandwidth_Bps
    layers = [
        LayerCost("a", 0, forward_flops=2 * peak, backward_flops=4 * peak, forward_bytes=1.0,
                  backward_bytes=2.0, params=("a.weight",)),
        LayerCost("b", 1, forward_flops=1.0, backward_flops=2.0, forward_bytes=3 * bw,
                  backward_bytes=6 * bw, params=("b.weight", "b.bias")),
    ]  # fmt: skip
    params = [ParamInfo("b.bias", (4,), 4, 0.1), ParamInfo("b.weight", (4, 4), 16, 0.2),
              ParamInfo("a.weight", (4, 8), 32, 0.9)]  # fmt: skip
    return Workload(
        model="toy", batch_size=2, device="cpu", dtype=dtype, torch_version="x", data_source="none",
        forward_s=5.0, backward_s=1.0, optimizer_s=0.5, peak_memory_bytes=1000, params=params,
        gradients=None, grad_stats=[], layers=layers,
    )  # fmt: skip


def test_rescale_matches_the_roofline_closed_form() -> None:
    w = _toy_workload()
    r = rescale(w, "V100")
    # a is compute-bound (2 s forward, 4 s backward), b memory-bound (3 s, 6 s)
    assert r.forward_s == pytest.approx(5.0)
    assert r.backward_s == pytest.approx(10.0)
    ready = {p.name: p.ready_s for p in r.params}
    assert ready["b.bias"] == pytest.approx(6.0) and ready["b.weight"] == pytest.approx(6.0)
    assert ready["a.weight"] == pytest.approx(10.0)
    v100 = get_device("V100")
    assert r.optimizer_s == pytest.approx(5 * 4 * 52 / v100.memory_bandwidth_Bps)
    assert r.estimate and r.target_device == "V100" and "estimate" in r.describe()
    assert not w.estimate and w.forward_s == 5.0  # the input is not modified
    half = rescale(w, "V100", compute_efficiency=0.5, memory_efficiency=0.5)
    assert half.forward_s == pytest.approx(10.0)


def test_rescale_rejects_what_the_target_cannot_do() -> None:
    with pytest.raises(WorkloadError, match="bfloat16"):
        rescale(_toy_workload("bfloat16"), "V100")
    big = _toy_workload()
    big.peak_memory_bytes = 100 * 2**30
    with pytest.raises(WorkloadError, match="smaller batch_size"):
        rescale(big, "K80")
    with pytest.raises(ConfigError, match="compute_efficiency"):
        rescale(_toy_workload(), "A100", compute_efficiency=0.0)
    empty = _toy_workload()
    empty.layers = []
    with pytest.raises(WorkloadError, match="per-layer"):
        rescale(empty, "A100")


def test_faster_gpu_gives_smaller_times_on_a_real_profile() -> None:
    w = profile_model("small_cnn", 8, device="cpu", warmup=0, iters=1, cache=False)
    times = {g: rescale(w, g) for g in ("K80", "V100", "H100")}
    assert times["K80"].compute_s > times["V100"].compute_s > times["H100"].compute_s
    for r in times.values():
        ready = [p.ready_s for p in r.params]
        assert [p.name for p in r.params] == [p.name for p in w.params]
        assert all(a <= b for a, b in itertools.pairwise(ready))
        assert ready[-1] <= r.backward_s + 1e-15 and r.estimate


def test_with_measured_times_scales_ready_times() -> None:
    w = _toy_workload()
    m = with_measured_times(w, 0.25, 2.0, 0.125, device_label="lab box")
    assert (m.forward_s, m.backward_s, m.optimizer_s) == (0.25, 2.0, 0.125)
    assert [p.ready_s for p in m.params] == pytest.approx([0.2, 0.4, 1.8])
    assert not m.estimate and m.target_device == "lab box"
    with pytest.raises(ConfigError, match="backward_s"):
        with_measured_times(w, 0.1, -1.0, 0.1)
    with pytest.raises(ConfigError, match="forward_s"):
        with_measured_times(w, math.nan, 1.0, 0.1)
