"""The sweep engine: serial and Dask agree, nothing is repeated after a crash, failures recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from gradwire.errors import ConfigError
from gradwire.results import Row
from gradwire.sweep import engine as engine_mod
from gradwire.sweep.engine import run_sweep
from gradwire.sweep.store import ResultStore
from gradwire.sweep.synthetic import (
    SyntheticShared,
    counted_evaluations,
    evaluate_synthetic,
    ring_allreduce_s,
    synthetic_points,
)

# 5 x 3 x 4 = 60 points
POINTS = synthetic_points([2, 4, 8, 64, 1024], [1.0, 10.0, 100.0], [2, 4, 8, 32])
NUMELS = np.full(50, 20_000, dtype=np.int64)


def shared(tmp_path: Path, **kw: object) -> SyntheticShared:
    return SyntheticShared(numels=NUMELS, counter_path=str(tmp_path / "evals.log"), **kw)  # type: ignore[arg-type]


def closed_form(row: Row) -> float:
    bits = row.params["bits"]
    nbytes = float(NUMELS.sum()) * bits / 8
    bw = row.params["cluster.bandwidth_Gbps"] * 1e9 / 8
    return 0.05 + ring_allreduce_s(nbytes, row.workers, bw, 5e-6)


def flat(rows: list[Row]) -> list[dict[str, object]]:
    return [{k: v for k, v in asdict(r).items() if not (isinstance(v, float) and v != v)} for r in rows]


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    """A two-process local Dask cluster shared by the tests that connect to a scheduler."""
    import logging

    from dask.distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def test_serial_rows_match_the_closed_form(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        report = run_sweep(POINTS, evaluate_synthetic, shared(tmp_path), store, progress=False)
        rows = store.rows()
    assert (report.done, report.skipped, report.failed) == (60, 0, [])
    assert [r.point for r in rows] == list(range(60))
    for r in rows:
        assert r.iteration_s == pytest.approx(closed_form(r), rel=1e-12)


def test_dask_gives_the_same_rows_as_serial(tmp_path: Path, dask_scheduler: str) -> None:
    sh = shared(tmp_path)
    with ResultStore(tmp_path / "serial") as s1, ResultStore(tmp_path / "dask") as s2:
        r1 = run_sweep(POINTS, evaluate_synthetic, sh, s1, progress=False)
        r2 = run_sweep(POINTS, evaluate_synthetic, sh, s2, engine="dask", scheduler=dask_scheduler,
                       progress=False)
        assert r1.done == r2.done == 60 and r2.workers == 2 and r2.engine == "dask"
        assert flat(s1.rows()) == flat(s2.rows())
        assert s1.traces() == s2.traces()
    # every point evaluated exactly once per sweep
    evals = counted_evaluations(tmp_path / "evals.log")
    assert sorted(evals) == sorted([p.point_id for p in POINTS] * 2)


def test_scheduler_from_environment_variable(tmp_path: Path, dask_scheduler: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_scheduler)
    with ResultStore(tmp_path) as store:
        report = run_sweep(POINTS[:10], evaluate_synthetic, shared(tmp_path), store, engine="dask",
                           progress=False)
        assert report.done == 10 and report.workers == 2  # the fixture's two workers, not a new cluster


def test_failing_point_is_recorded_and_the_rest_finish(tmp_path: Path, dask_scheduler: str) -> None:
    sh = shared(tmp_path, fail_indices=frozenset({7, 33}))
    with ResultStore(tmp_path) as store:
        report = run_sweep(POINTS, evaluate_synthetic, sh, store, engine="dask", scheduler=dask_scheduler,
                           progress=False)
        assert report.done == 58
        failed_ids = {POINTS[7].point_id, POINTS[33].point_id}
        assert {f.point_id for f in report.failed} == failed_ids
        assert all(f.error.startswith("ValueError: synthetic failure") for f in report.failed)
        assert "Traceback" in report.failed[0].traceback
        assert {e["point_id"] for e in store.errors()} == failed_ids
        assert {e["meta"]["index"] for e in store.errors()} == {7, 33}
        assert len(store.rows()) == 58 and "2 failed" in report.summary()
        # a re-run retries only the failed points (which now succeed)
        again = run_sweep(POINTS, evaluate_synthetic, shared(tmp_path), store, progress=False)
        assert (again.done, again.skipped, again.failed) == (2, 58, [])
        assert store.errors() == [] and len(store.rows()) == 60
    evals = counted_evaluations(tmp_path / "evals.log")
    assert len(evals) == 62 and sorted(evals[60:]) == sorted(failed_ids)


def test_rerun_skips_finished_points_and_duplicates(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        run_sweep(POINTS[:25], evaluate_synthetic, shared(tmp_path), store, progress=False)
        report = run_sweep(POINTS + POINTS[:5], evaluate_synthetic, shared(tmp_path), store, progress=False)
        assert (report.total, report.done, report.skipped) == (65, 35, 30)
    evals = counted_evaluations(tmp_path / "evals.log")
    assert sorted(evals) == sorted(p.point_id for p in POINTS)  # no point evaluated twice


DRIVER = textwrap.dedent("""
    import sys
    import numpy as np
    from gradwire.sweep.engine import run_sweep
    from gradwire.sweep.store import ResultStore
    from gradwire.sweep.synthetic import SyntheticShared, evaluate_synthetic, synthetic_points

    def main():
        store_dir, counter, engine = sys.argv[1:4]
        points = synthetic_points([2, 4, 8, 64, 1024], [1.0, 10.0, 100.0], [2, 4, 8, 32])
        shared = SyntheticShared(numels=np.full(50, 20_000, dtype=np.int64), counter_path=counter,
                                 sleep_s=0.05)
        run_sweep(points, evaluate_synthetic, shared, ResultStore(store_dir), engine=engine,
                  workers=2, progress=False)

    if __name__ == "__main__":
        main()
""")


def _stored_count(store_dir: Path) -> int:
    try:
        with ResultStore(store_dir) as s:
            return len(s)
    except Exception:  # the driver may not have created the tables yet
        return 0


@pytest.mark.parametrize("engine", ["serial", pytest.param("dask", marks=pytest.mark.slow)])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_driver_rerun_completes_without_repeating(tmp_path: Path, engine: str,
                                                         sig: signal.Signals) -> None:
    store_dir, counter = tmp_path / "store", tmp_path / "evals.log"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    # Its own session, so that a SIGKILL can reach the driver's Dask worker processes too.
    proc = subprocess.Popen([sys.executable, str(script), str(store_dir), str(counter), engine],
                            start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _stored_count(store_dir) < 12 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(sig)  # Ctrl-C reaches the driver; it closes its cluster
    proc.wait(timeout=60)
    if sig != signal.SIGKILL:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the interrupted driver left behind
        except ProcessLookupError:
            pass
    with ResultStore(store_dir) as store:
        before = store.done_ids()
    assert 12 <= len(before) < 60, "the driver must be stopped mid-sweep"
    first_run = counted_evaluations(counter)
    assert before <= set(first_run)

    with ResultStore(store_dir) as store:
        report = run_sweep(POINTS, evaluate_synthetic, shared(tmp_path), store, progress=False)
        assert report.skipped == len(before) and report.done == 60 - len(before)
        assert store.done_ids() == {p.point_id for p in POINTS}
        assert [r.point for r in store.rows()] == list(range(60))
    second_run = counted_evaluations(counter)[len(first_run):]
    assert not set(second_run) & before  # no finished point evaluated again
    assert sorted(second_run) == sorted({p.point_id for p in POINTS} - before)


@pytest.mark.slow
def test_killed_worker_loses_nothing(tmp_path: Path) -> None:
    """A worker process dies mid-task: Dask replaces it, retries the task, the sweep completes."""
    sh = shared(tmp_path, crash_once_path=str(tmp_path / "crashed"), crash_index=5)
    with ResultStore(tmp_path / "dask") as store, ResultStore(tmp_path / "serial") as ref:
        report = run_sweep(POINTS[:20], evaluate_synthetic, sh, store, engine="dask", workers=2,
                           progress=False)
        assert (tmp_path / "crashed").exists()
        assert report.done == 20 and report.failed == []
        run_sweep(POINTS[:20], evaluate_synthetic, shared(tmp_path), ref, progress=False)
        assert flat(store.rows()) == flat(ref.rows())


def test_progress_bar_shows_done_failed_and_eta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ResultStore(tmp_path) as store:
        run_sweep(POINTS[:6], evaluate_synthetic, shared(tmp_path, fail_indices=frozenset({1})), store)
    err = capsys.readouterr().err
    assert "6/6" in err and "1 failed" in err and "left" in err


def test_bad_arguments_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ResultStore(tmp_path) as store:
        with pytest.raises(ConfigError, match="engine must be one of serial, dask"):
            run_sweep(POINTS, evaluate_synthetic, shared(tmp_path), store, engine="ray")
        with pytest.raises(ConfigError, match="workers must be >= 1"):
            run_sweep(POINTS, evaluate_synthetic, shared(tmp_path), store, engine="dask", workers=0)
        monkeypatch.setattr(engine_mod, "CONNECT_TIMEOUT_S", 0.5)
        with pytest.raises(ConfigError, match=r"scheduler 'tcp://127.0.0.1:9': cannot connect"):
            run_sweep(POINTS, evaluate_synthetic, shared(tmp_path), store, engine="dask",
                      scheduler="tcp://127.0.0.1:9", progress=False)
        assert len(store) == 0


def test_costliest_points_start_first(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        run_sweep(POINTS[:12], evaluate_synthetic, shared(tmp_path), store, progress=False,
                  cost=lambda p: p.values["workers"] * 100 + p.values["bits"])
        assert [r.point for r in store.rows()] == list(range(12))  # stored order is irrelevant
    order = counted_evaluations(tmp_path / "evals.log")
    by_id = {p.point_id: p.values["workers"] * 100 + p.values["bits"] for p in POINTS[:12]}
    costs = [by_id[i] for i in order]
    assert costs == sorted(costs, reverse=True) and len(costs) == 12
