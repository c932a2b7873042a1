"""Joining learning curves with the simulated clock: accuracy vs time, time to a target.

A learning curve says how accurate the model is after ``n`` steps; the simulator says how
long one step takes on the cluster with each codec (``iteration_s``). Their product is
accuracy versus predicted wall-clock time, from which follow the time to reach a target
accuracy and the speedup to that target against full precision (fp32) and 1-bit SGD --
the QSGD paper's "time to full accuracy" comparison (Alistarh et al. 2017, sec. 5).

The step at which a curve reaches the target is the first *evaluated* step whose test
accuracy is at least the target (no interpolation between evaluations: the target is
known to be reached there, and the resolution is the run's ``eval_every``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gradwire.convergence.runner import Curve
from gradwire.errors import ConfigError
from gradwire.registry import parse_spec


def _name(spec: str) -> str:
    return parse_spec(spec)[0]


def _iteration_s(curve: Curve, iteration_s: Mapping[str, float]) -> float:
    try:
        t = float(iteration_s[curve.codec])
    except KeyError:
        raise ConfigError(
            f"no simulated iteration time for codec {curve.codec!r}; iteration_s has: "
            f"{', '.join(sorted(iteration_s)) or 'nothing'}"
        ) from None
    if not (math.isfinite(t) and t > 0):
        raise ConfigError(
            f"iteration_s[{curve.codec!r}] must be a positive number of seconds, got {t!r}"
        )
    return t


def steps_to_target(curve: Curve, target: float) -> int | None:
    """The first evaluated step whose test accuracy is >= ``target``; None if never."""
    for step, acc in zip(curve.steps, curve.test_acc, strict=True):
        if acc >= target:
            return step
    return None


def _reference(curves: Sequence[Curve], name: str) -> Curve | None:
    return next((c for c in curves if _name(c.codec) == name), None)


def _ratio(ref_s: float, mine_s: float) -> float:
    """``ref_s / mine_s`` with never-reached times as +inf: a codec that reaches the
    target when the reference never does has speedup inf; the reverse gives 0; NaN when
    neither reaches it or there is no reference."""
    if math.isnan(ref_s) or math.isnan(mine_s) or (math.isinf(ref_s) and math.isinf(mine_s)):
        return math.nan
    if math.isinf(mine_s):
        return 0.0
    if math.isinf(ref_s):
        return math.inf
    return ref_s / mine_s if mine_s > 0 else math.nan


def time_to_accuracy(
    curves: Sequence[Curve],
    iteration_s: Mapping[str, float],
    *,
    target: float | None = None,
    target_fraction: float = 0.99,
) -> list[dict[str, Any]]:
    """One record per codec: how many steps and how many predicted seconds it needs to
    reach the target test accuracy, and its speedup to that target.

    ``iteration_s`` maps each curve's codec spec to its simulated iteration time in
    seconds. ``target`` is an absolute test accuracy in (0, 1]; when None it is
    ``target_fraction`` times the best test accuracy of the fp32 curve (which must then
    be among ``curves``). ``time_to_target_s = steps_to_target * iteration_s`` (NaN if
    never reached); ``speedup_to_target_vs_fp32`` (resp. ``_vs_onebit``) is the fp32
    (resp. first ``onebit``) curve's time to target divided by this codec's (NaN without
    that reference; see :func:`_ratio` for targets never reached).
    """
    if not curves:
        raise ConfigError("time_to_accuracy: no curves given")
    fp32 = _reference(curves, "fp32")
    if target is None:
        if not 0.0 < target_fraction <= 1.0:
            raise ConfigError(
                f"time_to_accuracy: target_fraction must lie in (0, 1], got {target_fraction!r}"
            )
        if fp32 is None:
            raise ConfigError(
                "time_to_accuracy: the default target is a fraction of fp32's best test "
                "accuracy, but no fp32 curve was given; add fp32 to the codecs or pass target="
            )
        target = target_fraction * fp32.best_test_acc
    elif not 0.0 < target <= 1.0:
        raise ConfigError(f"time_to_accuracy: target must lie in (0, 1], got {target!r}")

    def reach_s(c: Curve | None) -> float:
        if c is None:
            return math.nan
        n = steps_to_target(c, target)
        return math.inf if n is None else n * _iteration_s(c, iteration_s)

    fp32_s, onebit_s = reach_s(fp32), reach_s(_reference(curves, "onebit"))
    out = []
    for c in curves:
        n = steps_to_target(c, target)
        it = _iteration_s(c, iteration_s)
        mine = math.inf if n is None else n * it
        out.append({
            "codec": c.codec,
            "codec_name": _name(c.codec),
            "target": target,
            "reached": n is not None,
            "steps_to_target": n,
            "iteration_s": it,
            "time_to_target_s": mine if n is not None else math.nan,
            "best_test_acc": c.best_test_acc,
            "final_test_acc": c.test_acc[-1] if c.test_acc else math.nan,
            "speedup_to_target_vs_fp32": _ratio(fp32_s, mine),
            "speedup_to_target_vs_onebit": _ratio(onebit_s, mine),
        })
    return out


def accuracy_vs_time(
    curves: Sequence[Curve], iteration_s: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Long-format records ``codec, step, time_s, test_acc, train_loss`` (one per evaluated
    step and codec) with ``time_s = step * iteration_s[codec]``: the predicted wall-clock
    time on the simulated cluster at which the model reaches that accuracy."""
    out = []
    for c in curves:
        it = _iteration_s(c, iteration_s)
        for step, acc, loss in zip(c.steps, c.test_acc, c.train_loss, strict=True):
            out.append({
                "codec": c.codec,
                "step": step,
                "time_s": step * it,
                "test_acc": acc,
                "train_loss": loss,
            })
    return out
