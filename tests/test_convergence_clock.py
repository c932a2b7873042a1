"""Time to target and accuracy vs simulated time, on hand-made curves with known answers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwire.convergence import Curve, accuracy_vs_time, steps_to_target, time_to_accuracy
from gradwire.errors import ConfigError


def curve(codec: str, accs: list[float], every: int = 10) -> Curve:
    steps = [i * every for i in range(len(accs))]
    return Curve(codec, steps, [1.0 / (1 + s) for s in steps], accs)


FP32 = curve("fp32", [0.1, 0.5, 0.8, 0.95, 1.0, 0.98])
QSGD = curve("qsgd(bits=4, bucket=512)", [0.1, 0.4, 0.7, 0.9, 0.99, 0.995])
ONEBIT = curve("onebit", [0.1, 0.3, 0.5, 0.6, 0.7, 0.8])
ITER = {"fp32": 1.0, "qsgd(bits=4, bucket=512)": 0.5, "onebit": 0.25}


def by_codec(records: list[dict]) -> dict[str, dict]:
    return {r["codec"]: r for r in records}


def test_default_target_is_99_percent_of_fp32_best() -> None:
    recs = by_codec(time_to_accuracy([FP32, QSGD, ONEBIT], ITER))
    # fp32's best accuracy is 1.0 (step 40), so the target is 0.99.
    assert all(r["target"] == pytest.approx(0.99) for r in recs.values())
    fp, q, ob = recs["fp32"], recs["qsgd(bits=4, bucket=512)"], recs["onebit"]
    assert (fp["steps_to_target"], q["steps_to_target"], ob["steps_to_target"]) == (40, 40, None)
    assert fp["time_to_target_s"] == pytest.approx(40.0)
    assert q["time_to_target_s"] == pytest.approx(20.0)
    assert math.isnan(ob["time_to_target_s"]) and not ob["reached"]
    assert q["speedup_to_target_vs_fp32"] == pytest.approx(2.0)
    assert fp["speedup_to_target_vs_fp32"] == pytest.approx(1.0)
    # The 1-bit reference never reaches the target: a codec that does is infinitely faster,
    # and the 1-bit codec itself is 0x as fast as fp32.
    assert q["speedup_to_target_vs_onebit"] == math.inf
    assert ob["speedup_to_target_vs_fp32"] == 0.0
    assert math.isnan(ob["speedup_to_target_vs_onebit"])


def test_explicit_target_and_onebit_reference() -> None:
    recs = by_codec(time_to_accuracy([FP32, QSGD, ONEBIT], ITER, target=0.7))
    # First evaluated step at or above 0.7: fp32 20, qsgd 20, onebit 40.
    assert recs["fp32"]["time_to_target_s"] == pytest.approx(20 * 1.0)
    assert recs["qsgd(bits=4, bucket=512)"]["time_to_target_s"] == pytest.approx(20 * 0.5)
    assert recs["onebit"]["time_to_target_s"] == pytest.approx(40 * 0.25)
    assert recs["qsgd(bits=4, bucket=512)"]["speedup_to_target_vs_onebit"] == pytest.approx(1.0)
    assert recs["fp32"]["speedup_to_target_vs_onebit"] == pytest.approx(0.5)
    assert recs["onebit"]["speedup_to_target_vs_fp32"] == pytest.approx(2.0)


def test_target_fraction_scales_fp32_best() -> None:
    recs = by_codec(time_to_accuracy([FP32, ONEBIT], ITER, target_fraction=0.5))
    assert recs["fp32"]["target"] == pytest.approx(0.5)
    assert recs["onebit"]["steps_to_target"] == 20


def test_no_interpolation_between_evaluations() -> None:
    # 0.85 lies between step 20 (0.8) and step 30 (0.95): the target counts as reached at
    # the first evaluation that shows it, step 30.
    assert steps_to_target(FP32, 0.85) == 30
    assert steps_to_target(FP32, 0.95) == 30
    assert steps_to_target(FP32, 1.01) is None


def test_missing_reference_gives_nan_speedup() -> None:
    recs = time_to_accuracy([QSGD], ITER, target=0.9)
    assert math.isnan(recs[0]["speedup_to_target_vs_fp32"])
    assert math.isnan(recs[0]["speedup_to_target_vs_onebit"])
    assert recs[0]["time_to_target_s"] == pytest.approx(15.0)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="no fp32 curve"):
        time_to_accuracy([QSGD], ITER)
    with pytest.raises(ConfigError, match="no simulated iteration time for codec 'onebit'"):
        time_to_accuracy([FP32, ONEBIT], {"fp32": 1.0})
    with pytest.raises(ConfigError, match="target must lie"):
        time_to_accuracy([FP32], ITER, target=1.5)
    with pytest.raises(ConfigError, match="positive number of seconds"):
        accuracy_vs_time([FP32], {"fp32": 0.0})


def test_accuracy_vs_time_records() -> None:
    recs = accuracy_vs_time([FP32, QSGD], ITER)
    assert len(recs) == len(FP32.steps) + len(QSGD.steps)
    for r in recs:
        assert r["time_s"] == pytest.approx(r["step"] * ITER[r["codec"]])
    q = [r for r in recs if r["codec"] == QSGD.codec]
    assert [r["test_acc"] for r in q] == QSGD.test_acc
    assert [r["train_loss"] for r in q] == QSGD.train_loss


@settings(max_examples=60, deadline=None)
@given(
    accs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
    target=st.floats(0.01, 1.0),
    it=st.floats(1e-4, 10.0),
)
def test_first_step_reaching_target(accs: list[float], target: float, it: float) -> None:
    c = curve("fp32", accs, every=5)
    rec = time_to_accuracy([c], {"fp32": it}, target=target)[0]
    n = rec["steps_to_target"]
    if n is None:
        assert max(accs) < target and math.isnan(rec["time_to_target_s"])
    else:
        i = c.steps.index(n)
        assert accs[i] >= target and all(a < target for a in accs[:i])
        assert rec["time_to_target_s"] == pytest.approx(n * it)
        assert rec["speedup_to_target_vs_fp32"] == pytest.approx(1.0) or n == 0
