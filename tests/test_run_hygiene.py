"""Interrupted and concurrent runs: the store knows what made each row, one driver per folder,
killed sweeps resume without recomputing, killed validation leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gradwire.errors import StoreError
from gradwire.sweep import ResultStore, run_sweep
from gradwire.sweep.provenance import (
    OutputLock,
    explain_stale,
    inputs_digest,
    open_out_dir,
    point_provenance,
)
from gradwire.sweep.synthetic import (
    SyntheticShared,
    counted_evaluations,
    evaluate_synthetic,
    ring_allreduce_s,
    synthetic_points,
)
from gradwire.validate.hygiene import TMP_PREFIX, child_preexec, remove_leftovers

POINTS = synthetic_points([2, 4, 8, 16], [1.0, 10.0, 100.0], [4, 8, 32])  # 36 points
NUMELS = np.array([1_000_000, 250_000])

DRIVER = """
import sys
import numpy as np
from gradwire.sweep import ResultStore, run_sweep
from gradwire.sweep.provenance import OutputLock, open_out_dir, point_provenance
from gradwire.sweep.synthetic import SyntheticShared, evaluate_synthetic, synthetic_points

out, counter, sleep_s, wait_s = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
points = synthetic_points([2, 4, 8, 16], [1.0, 10.0, 100.0], [4, 8, 32])
shared = SyntheticShared(np.array([1_000_000, 250_000]), counter_path=counter, sleep_s=sleep_s)
prov = point_provenance("synthetic-inputs-v1", "closed form")
open_out_dir(out)
with OutputLock(out, wait_s=wait_s, say=lambda m: print(m, flush=True)):
    with ResultStore(out) as store:
        run_sweep(points, evaluate_synthetic, shared, store, progress=False, provenance=lambda p: prov)
print("driver done", flush=True)
"""


def _driver(tmp_path: Path, out: Path, counter: Path, *, sleep_s: float, wait_s: float = 0.0) -> subprocess.Popen[str]:
    script = tmp_path / "driver.py"
    if not script.exists():
        script.write_text(DRIVER)
    return subprocess.Popen([sys.executable, str(script), str(out), str(counter), str(sleep_s), str(wait_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _stored(out: Path) -> int:
    if not (out / "results.sqlite").exists():
        return 0
    try:
        with ResultStore(out) as store:
            return len(store)
    except Exception:
        return 0


def _expected_iteration_s(point: object) -> float:
    v = point.values  # type: ignore[attr-defined]
    nbytes = int(NUMELS.sum()) * v["bits"] / 8
    return 0.05 + ring_allreduce_s(nbytes, v["workers"], v["cluster.bandwidth_Gbps"] * 1e9 / 8, 5e-6)


def _check_store(out: Path) -> None:
    """Every point once, each row the closed form of its own point, one provenance."""
    with ResultStore(out) as store:
        rows = store.rows()
        provs = store.provenance()
    assert sorted(r.point_id for r in rows) == sorted(p.point_id for p in POINTS)
    by_id = {p.point_id: p for p in POINTS}
    for r in rows:
        assert r.iteration_s == pytest.approx(_expected_iteration_s(by_id[r.point_id]), rel=1e-12)
    assert len({tuple(sorted(p.items())) for p in provs.values()}) == 1


def test_sweep_killed_at_random_points_and_resumed(tmp_path: Path) -> None:
    """SIGKILL at seeded random moments, then resume: the store ends with every point once,
    and only a point in flight at a kill is ever evaluated twice (at most one per kill)."""
    out, counter = tmp_path / "out", tmp_path / "evals.log"
    rng = np.random.default_rng(17)
    kills, partial = 0, 0
    for _ in range(4):
        have = _stored(out)
        target = int(rng.integers(have + 1, have + 8))  # kill after a random number more points
        proc = _driver(tmp_path, out, counter, sleep_s=0.05)
        deadline = time.monotonic() + 60
        while _stored(out) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        partial += 0 < _stored(out) < len(POINTS)
    assert kills == 4 and partial == 4, "every kill must land mid-sweep"
    proc = _driver(tmp_path, out, counter, sleep_s=0.0)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, text
    _check_store(out)
    evaluations = Counter(counted_evaluations(counter))
    assert set(evaluations) == {p.point_id for p in POINTS}
    repeated = sum(c - 1 for c in evaluations.values())
    assert repeated <= kills
    print(f"kill test: {kills} kills ({partial} mid-sweep), {len(POINTS)} points, "
          f"{sum(evaluations.values())} evaluations, {repeated} repeated")


def test_two_concurrent_drivers_compute_each_point_once(tmp_path: Path) -> None:
    out, counter = tmp_path / "out", tmp_path / "evals.log"
    a = _driver(tmp_path, out, counter, sleep_s=0.25, wait_s=120)  # ~9 s of sweep
    deadline = time.monotonic() + 60
    while _stored(out) < 1 and a.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # a holds the folder from here on
    b = _driver(tmp_path, out, counter, sleep_s=0.25, wait_s=120)
    ta, _ = a.communicate(timeout=180)
    tb, _ = b.communicate(timeout=180)
    assert a.returncode == 0 and b.returncode == 0, ta + tb
    assert "in use by another run" in ta + tb  # the second one said it waited
    _check_store(out)
    evaluations = Counter(counted_evaluations(counter))
    assert sorted(evaluations) == sorted(p.point_id for p in POINTS)
    assert set(evaluations.values()) == {1}


def test_second_driver_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    out = open_out_dir(tmp_path / "out")
    with OutputLock(out):
        with pytest.raises(StoreError, match=rf"in use by another GradWire run \(pid {os.getpid()}"):
            OutputLock(out, wait_s=0.3, poll_s=0.05).acquire()
    with OutputLock(out):  # released: free again
        pass


def test_out_that_is_a_file_or_cannot_be_created(tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        open_out_dir(f)
    with pytest.raises(StoreError, match="cannot create"):
        open_out_dir(f / "sub")


def test_rerun_reuses_only_points_with_equal_provenance(tmp_path: Path) -> None:
    shared = SyntheticShared(NUMELS, counter_path=str(tmp_path / "evals.log"))
    old = point_provenance(inputs_digest(["inputs", 1]), "cache")
    new = point_provenance(inputs_digest(["inputs", 2]), "cache")
    pts = POINTS[:6]
    with ResultStore(tmp_path / "out") as store:
        run_sweep(pts, evaluate_synthetic, shared, store, progress=False, provenance=lambda p: old)
        again = run_sweep(pts, evaluate_synthetic, shared, store, progress=False, provenance=lambda p: old)
        assert (again.done, again.skipped) == (0, 6)
        changed = {p.point_id: (new if p.index < 2 else old) for p in pts}
        stored = store.provenance()
        msg = explain_stale(stored, changed)
        assert msg == "recomputing 2 stored point(s): 2 made with other profiled or measured inputs"
        third = run_sweep(pts, evaluate_synthetic, shared, store, progress=False,
                          provenance=lambda p: changed[p.point_id])
        assert (third.done, third.skipped) == (2, 4)
        assert store.provenance() == changed
    other_source = {pid: {**p, "codec_cost_source": "measured in this run"} for pid, p in changed.items()}
    assert "another codec cost source ('cache' then, 'measured in this run' now)" in explain_stale(
        changed, other_source)


CHILD = """
import subprocess, sys, time
from gradwire.validate.hygiene import child_preexec
p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=child_preexec,
                     start_new_session=True)
print(p.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (dead, not yet reaped by init) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_worker_dies_with_its_killed_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()  # SIGKILL: no handler of the parent runs
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the worker outlived its parent"


def test_leftovers_of_a_killed_run_are_removed_and_reported(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"{TMP_PREFIX}{gone.pid}-abc"
    stale.mkdir()
    (stale / "job.json").write_text("{}")
    live = tmp_path / f"{TMP_PREFIX}{os.getpid()}-def"  # this process is alive: kept
    live.mkdir()
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "gradwire.validate.worker",
                               "--job", str(stale / "job.json")], start_new_session=True, preexec_fn=child_preexec)
    said = remove_leftovers(str(tmp_path))
    orphan.wait(timeout=10)
    assert not stale.exists() and live.exists()
    assert any(f"ended worker process {orphan.pid}" in s for s in said)
    assert any(f"removed temporary folder {stale}" in s for s in said)
    assert remove_leftovers(str(tmp_path)) == []


@pytest.mark.slow
def test_two_quickstart_runs_are_byte_identical(tmp_path: Path) -> None:
    """Same scenario and seed on the same machine: the same results.csv, byte for byte, in
    two fresh output folders (codec times come from the host cache, not a re-measurement)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_end_to_end import REDUCED, _run

    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        args = ["quickstart", "--out", str(out), "--quiet"]
        for o in REDUCED:
            args += ["--set", o]
        proc = _run(args, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (outs[0] / "results.csv").read_bytes() == (outs[1] / "results.csv").read_bytes()
