"""The verdict: one answer per scenario point, with a 90% interval from the inputs' errors.

At every point the **fastest compressed option** (a codec and the collective that carries
it) is compared with the **best uncompressed baseline** (the fastest of the codecs whose
declared exchange is a baseline: fp32 in place, fp16/bf16 casts). The speedup is the
baseline's iteration time over the option's.

Its interval comes from the stated uncertainty of every input time
(:mod:`gradwire.uncertainty`), propagated through the simulator by Monte Carlo: each of
``verdict.draws`` draws perturbs the compute times, each codec's encode and decode times
and the network's efficiency, rebuilds every codec's iteration with
:func:`gradwire.iteration.iteration_spec` and simulates it again with
:func:`gradwire.simulator.timeline.simulate_iteration`. One draw is applied to every codec
of the point (common random numbers), and in each draw the baseline is the fastest
baseline of that draw. The interval is the 5% and 95% points of the draws' speedups by
the ``p (n + 1)`` rule (numpy's ``weibull``), so that a new draw of the same distribution
falls inside it with probability 90% whatever the number of draws. Draws are seeded
(``verdict.seed``): the same scenario gives the same interval, byte for byte.

The decision: **compress** when the whole interval of the fastest compressed option lies
above 1x, **keep** the baseline when it lies below, **not decided** when it straddles 1x.
A point with no compressed codec, or no baseline, gets **no verdict** and says what to add.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gradwire.results import Row
from gradwire.uncertainty import Draws, PointUncertainty, point_uncertainty

LEVEL = 0.90
QUANTILES = (0.05, 0.95)

COMPRESS = "compress"
KEEP = "keep baseline"
UNDECIDED = "not decided"
NO_VERDICT = "no verdict"
DECISIONS = (COMPRESS, KEEP, UNDECIDED, NO_VERDICT)


@dataclass(frozen=True)
class PointVerdict:
    """The verdict of one point and every codec's speedup over its best baseline
    (``per_codec[spec] = (nominal, low, high)``)."""

    decision: str
    option: str  # the fastest compressed codec's spec ("" when none ran)
    collective: str  # the collective that carries it
    baseline: str  # the fastest baseline's spec ("" when none ran)
    speedup: float
    low: float
    high: float
    draws: int
    line: str
    basis: str = ""
    per_codec: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def interval(samples: np.ndarray) -> tuple[float, float]:
    """The 5% and 95% points of ``samples`` by the ``p (n + 1)`` rule."""
    lo, hi = np.quantile(np.asarray(samples, dtype=float), QUANTILES, method="weibull")
    return float(lo), float(hi)


def fmt_speedup(x: float) -> str:
    """``1.36×`` (the reports' format; a dash when there is no number)."""
    return f"{x:.2f}×" if math.isfinite(x) else "—"


def _line(decision: str, option: str, collective: str, baseline: str, x: float, lo: float, hi: float) -> str:
    what = f"{option} by {collective}"
    band = f"90% interval {fmt_speedup(lo)}-{fmt_speedup(hi)}"
    if decision == COMPRESS:
        return f"compress: {what}, {fmt_speedup(x)} vs {baseline} ({band})"
    if decision == KEEP:
        return f"keep {baseline}: the fastest compressed option, {what}, is {fmt_speedup(x)} ({band})"
    return f"not decided: {what} {fmt_speedup(x)} vs {baseline}, {band} straddles 1×"


def decide(nominal: Mapping[str, float], samples: Mapping[str, np.ndarray], baselines: Sequence[str],
           collectives: Mapping[str, str], *, basis: str = "") -> PointVerdict:
    """The verdict from every codec's nominal iteration time and its draws (same length,
    draw i of every codec from the same draw of the inputs)."""
    base = [c for c in nominal if c in baselines]
    comp = [c for c in nominal if c not in baselines]
    if not base or not comp:
        if not comp:
            best = min(base, key=lambda c: nominal[c]) if base else ""
            line = (f"no verdict: only uncompressed baselines ran ({', '.join(base)}); {best} is the "
                    "fastest; add a compressed codec to `codecs` for a verdict")
        else:
            line = ("no verdict: no uncompressed baseline ran; add fp32 (or fp16/bf16) to `codecs` "
                    "to compare the compressed options with")
            best = ""
        return PointVerdict(NO_VERDICT, "", "", best, math.nan, math.nan, math.nan, 0, line, basis)
    best_base = min(base, key=lambda c: nominal[c])
    n = len(next(iter(samples.values()))) if samples else 0
    per: dict[str, tuple[float, float, float]] = {}
    floor = np.min(np.stack([np.asarray(samples[c], dtype=float) for c in base]), axis=0) if n else None
    for c in nominal:
        x = nominal[best_base] / nominal[c]
        lo, hi = interval(floor / np.asarray(samples[c], dtype=float)) if floor is not None else (x, x)
        per[c] = (x, lo, hi)
    option = max(comp, key=lambda c: (per[c][0], -comp.index(c)))
    x, lo, hi = per[option]
    decision = COMPRESS if lo > 1.0 else KEEP if hi < 1.0 else UNDECIDED
    line = _line(decision, option, collectives.get(option, ""), best_base, x, lo, hi)
    return PointVerdict(decision, option, collectives.get(option, ""), best_base, x, lo, hi, n, line,
                        basis, per)


def simulate_draws(point: Any, prepared: Any, uncertainty: PointUncertainty, n: int,
                   seed: int) -> dict[str, np.ndarray]:
    """Every codec's iteration time in ``n`` seeded draws of the point's inputs (a line
    under the sweep's progress bar counts them when one is showing)."""
    from gradwire.iteration import ExchangeChoice
    from gradwire.pipeline import build_topology, point_buckets, workload_key
    from gradwire.sweep.engine import subtask

    sc = point.scenario
    key = workload_key(sc)
    ctx = _Context(sc, prepared, key, prepared.workloads[key], build_topology(sc),
                   point_buckets(sc, prepared.workloads[key].numels), ExchangeChoice.of(sc),
                   {s.rank: s.slowdown for s in sc.stragglers})
    draws = uncertainty.draw(n, seed)
    with subtask(f"verdict of point {point.index}: draws x codecs", n * len(sc.codecs)) as tick:
        return {spec: _codec_draws(ctx, spec, draws, tick) for spec in sc.codecs}


@dataclass(frozen=True)
class _Context:
    """What every draw of a point shares."""

    sc: Any
    prepared: Any
    key: str
    workload: Any
    topology: Any
    groups: list[list[int]]
    choice: Any
    stragglers: dict[int, float]


def _codec_draws(ctx: _Context, spec: str, draws: Draws, tick: Callable[[], None]) -> np.ndarray:
    """One codec's iteration time in each draw; equal draws (exact inputs) run once. Each
    draw runs :func:`gradwire.pipeline.simulate_codec`, the function the rows come from."""
    from gradwire.pipeline import simulate_codec
    from gradwire.sharding import Scale

    enc, dec = draws.encode[spec], draws.decode[spec]
    times = np.empty(draws.n)
    seen: dict[tuple[float, float, float, float], float] = {}
    for i in range(draws.n):
        c, e, d, eff = float(draws.compute[i]), float(enc[i]), float(dec[i]), float(draws.efficiency[i])
        if (c, e, d, eff) not in seen:
            res, _ = simulate_codec(ctx.sc, ctx.prepared, spec, ctx.topology, groups=ctx.groups,
                                    choice=ctx.choice, stragglers=ctx.stragglers, scale=Scale(c, e, d),
                                    efficiency=eff, trace=False)
            seen[(c, e, d, eff)] = res.iteration_s
        times[i] = seen[(c, e, d, eff)]
        tick()
    return times


def point_verdict(point: Any, prepared: Any, rows: Sequence[Row]) -> PointVerdict:
    """The verdict of one evaluated point (its rows hold the nominal iteration times)."""
    from gradwire.pipeline import workload_key

    sc = point.scenario
    cfg = sc.verdict
    key = workload_key(sc)
    profiles = {spec: prepared.codecs[(key, spec)] for spec in sc.codecs}
    unc = point_uncertainty(prepared.workloads[key], profiles, sc.network.efficiency, cfg.network_efficiency)
    baselines = [s for s, p in profiles.items() if p.exchange.baseline]
    nominal = {r.codec: r.iteration_s for r in rows}
    collectives = {r.codec: r.collective for r in rows}
    runs = bool(baselines) and len(baselines) < len(profiles)
    samples = simulate_draws(point, prepared, unc, cfg.draws, cfg.seed) if runs else {}
    basis = f"{cfg.draws} draws (seed {cfg.seed}): {unc.basis()}" if runs else ""
    return decide(nominal, samples, baselines, collectives, basis=basis)


def attach(rows: Sequence[Row], verdict: PointVerdict) -> list[Row]:
    """``rows`` of one point with the verdict's columns filled."""
    out = []
    for r in rows:
        x, lo, hi = verdict.per_codec.get(r.codec, (math.nan, math.nan, math.nan))
        out.append(replace(
            r, best_baseline=verdict.baseline, speedup_vs_best_baseline=x, speedup_low=lo, speedup_high=hi,
            verdict=verdict.decision,
            verdict_option=f"{verdict.option} by {verdict.collective}" if verdict.option else "",
            verdict_line=verdict.line, interval_basis=verdict.basis,
        ))
    return out


def with_verdict(point: Any, prepared: Any, rows: Sequence[Row]) -> list[Row]:
    """The point's rows with its verdict (unchanged when ``verdict.enabled`` is false)."""
    if not point.scenario.verdict.enabled:
        return list(rows)
    return attach(rows, point_verdict(point, prepared, rows))


def point_lines(rows: Sequence[Row]) -> dict[int, str]:
    """Each point's verdict line, from its rows (points without one left out)."""
    out: dict[int, str] = {}
    for r in rows:
        if r.verdict_line and r.point not in out:
            out[r.point] = r.verdict_line
    return out


__all__ = [
    "COMPRESS",
    "DECISIONS",
    "KEEP",
    "LEVEL",
    "NO_VERDICT",
    "UNDECIDED",
    "PointVerdict",
    "attach",
    "decide",
    "interval",
    "point_lines",
    "point_verdict",
    "simulate_draws",
    "with_verdict",
]
