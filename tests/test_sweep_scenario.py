"""Sweeps of a real scenario: the Dask engine reproduces the serial rows, and the dashboard
and tables rebuilt from the store equal those built from the rows in memory."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytest

from gradwire.errors import ConfigError
from gradwire.results import Row

# The quickstart's MLP on a star, 6 x 9 = 54 points of two codecs each.
OVERRIDES = [
    "sweep={workers: [2, 3, 4, 6, 8, 16], cluster.bandwidth_Gbps: [1, 2.5, 10, 25, 40, 100, 200, 400, 1000]}",
    "codecs=[fp32, 'qsgd(bits=4, bucket=512)']",
    "measure.repeats=1",
    "model.profile_iters=1",
    "convergence.enabled=false",
    "verdict.draws=19",  # the verdict's draws, the fewest that give a 90% interval
]


def _key(r: Row) -> dict[str, object]:
    return {k: v for k, v in asdict(r).items() if not (isinstance(v, float) and math.isnan(v))}


@pytest.fixture(scope="module")
def scenario_points(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from gradwire.pipeline import prepare
    from gradwire.scenarios.loader import expand, load_scenario

    sc = load_scenario("quickstart", OVERRIDES)
    points = expand(sc)
    with pytest.MonkeyPatch.context() as mp:  # profile into a private cache
        mp.setenv("GRADWIRE_CACHE", str(tmp_path_factory.mktemp("cache")))
        prepared = prepare(sc, points=points, progress=False)
    return sc, points, prepared


@pytest.mark.slow
def test_real_sweep_same_rows_serial_and_dask(tmp_path: Path, scenario_points) -> None:  # type: ignore[no-untyped-def]
    from gradwire.pipeline import evaluate_point
    from gradwire.sweep import ResultStore, run_sweep

    _sc, points, prepared = scenario_points
    assert len(points) >= 50
    with ResultStore(tmp_path / "serial") as s1, ResultStore(tmp_path / "dask") as s2:
        r1 = run_sweep(points, evaluate_point, prepared, s1, progress=False)
        r2 = run_sweep(points, evaluate_point, prepared, s2, engine="dask", workers=2, progress=False)
        assert r1.done == r2.done == len(points) and not r1.failed and not r2.failed
        rows1, rows2 = s1.rows(), s2.rows()
        assert len(rows1) == 2 * len(points)
        assert [_key(r) for r in rows1] == [_key(r) for r in rows2]
        assert s1.traces() == s2.traces()
        # and the stored rows are exactly what evaluating a point in memory gives
        direct_rows, _ = evaluate_point(points[7], prepared)
        stored = [r for r in rows1 if r.point_id == points[7].point_id]
        assert [_key(r) for r in stored] == [_key(r) for r in direct_rows]


@pytest.mark.slow
def test_store_round_trips_into_dashboard_and_report(tmp_path: Path, scenario_points) -> None:  # type: ignore[no-untyped-def]
    from gradwire.pipeline import evaluate_point
    from gradwire.report.dashboard import build_dashboard
    from gradwire.sweep import ResultStore, report, run_sweep

    sc, points, prepared = scenario_points
    few = points[:6]
    rows: list[Row] = []
    traces = []
    for p in few:
        r, t = evaluate_point(p, prepared)
        rows += r
        traces += t
    with ResultStore(tmp_path) as store:
        run_sweep(few, evaluate_point, prepared, store, progress=False)
        assert build_dashboard(store.rows(), store.traces(), title="t") == build_dashboard(rows, traces, title="t")
    files = report(tmp_path)
    assert set(files) == {"csv", "parquet", "dashboard"}
    html = files["dashboard"].read_text()
    assert f"GradWire: {sc.name}" in html
    csv_first = files["csv"].read_bytes()
    # report reads only the store: running it again rebuilds byte-identical tables
    assert report(tmp_path)["csv"].read_bytes() == csv_first
    assert csv_first.count(b"\n") == 1 + len(rows)


def test_report_without_a_store_says_what_to_do(tmp_path: Path) -> None:
    from gradwire.sweep import report

    with pytest.raises(ConfigError, match="no results store"):
        report(tmp_path)
