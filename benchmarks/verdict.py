"""The verdict's cost and its interval's coverage, measured side by side.

Usage::

    python benchmarks/verdict.py                              # cost on a synthetic point + coverage
    python benchmarks/verdict.py --trials 1000 --draws 19 100 # more coverage trials
    python benchmarks/verdict.py --scenario quickstart --workers 8 --draws 100

Cost: one point evaluated without its verdict and with it, printed as the ratio (the
verdict re-simulates every codec once per draw, so the ratio is about ``draws + 1``).
With ``--scenario`` the point is the scenario's (sweep removed, ``workers`` set), after
``prepare`` (profiling, codec measurement: reported apart). Coverage: the share of
synthetic scenarios whose 90% interval covers the simulated truth, by the same procedure
as ``tests/test_verdict.py`` (which runs 300 trials of 19 draws) with more trials.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _time_point(point, prep, draws: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    from gradwire.pipeline import evaluate_point

    sc = point.scenario
    off = replace(point, scenario=sc.model_copy(update={"verdict": sc.verdict.model_copy(update={"enabled": False})}))
    on = replace(point, scenario=sc.model_copy(update={"verdict": sc.verdict.model_copy(
        update={"enabled": True, "draws": draws})}))
    evaluate_point(off, prep)  # warm: imports, first topology
    t = time.perf_counter()
    for _ in range(5):
        evaluate_point(off, prep)
    t_off = (time.perf_counter() - t) / 5
    t = time.perf_counter()
    evaluate_point(on, prep)
    return t_off, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, nargs="+", default=[19, 100])
    ap.add_argument("--trials", type=int, default=600, help="coverage trials (0: cost only)")
    ap.add_argument("--scenario", default=None)
    ap.add_argument("--workers", type=int, default=8)
    a = ap.parse_args(argv)

    from test_verdict import IN_PLACE, PAYLOAD, QSGD, coverage, prepared, scenario

    from gradwire.scenarios.loader import Point

    if a.scenario:
        from gradwire.pipeline import prepare
        from gradwire.scenarios.loader import expand, load_scenario

        sc = load_scenario(a.scenario, ["sweep={}", f"workers={a.workers}", "convergence.enabled=false"])
        t = time.perf_counter()
        prep = prepare(sc, points=expand(sc), progress=False)
        print(f"{a.scenario}, {a.workers} workers, {len(sc.codecs)} codecs: prepare {time.perf_counter() - t:.1f} s")
        point = expand(sc)[0]
    else:
        sc = scenario(["fp32", QSGD], workers=4, gbps=1.0, eff=(0.85, 0.95))
        prep = prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, compute_error=0.15, spread=0.4,
                        codecs={"fp32": (IN_PLACE, 32, 0, 0), QSGD: (PAYLOAD, 4.06, 2e-9, 1e-9)})
        point = Point(0, "p0", {}, sc)
        print(f"synthetic point: 4 workers on a star, fp32 and {QSGD}")
    print(f"{'draws':>6} {'point s':>9} {'with verdict s':>15} {'ratio':>7}")
    for d in a.draws:
        t_off, t_on = _time_point(point, prep, d)
        print(f"{d:>6} {t_off:>9.3f} {t_on:>15.3f} {t_on / t_off:>7.1f}")
    if a.trials < 1:
        return 0
    print(f"\ncoverage of the simulated truth by the 90% interval ({a.trials} synthetic scenarios each)")
    print(f"{'draws':>6} {'covered':>8}   target 0.90")
    for d in a.draws:
        t = time.perf_counter()
        share = coverage(a.trials, d, seed=7)
        print(f"{d:>6} {share:>8.3f}   ({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
